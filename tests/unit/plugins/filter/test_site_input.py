# SPDX-License-Identifier: GPL-3.0-or-later
"""The site playbook's input checks: the roles' own argument specs, one sentence per mistake, and misspellings."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.filter.site_input import (  # noqa: F401
    _shown,
    input_errors,
    known_variables,
    misspelt_variables,
    size_error,
)


@pytest.mark.parametrize("role, values, expected", [
    ("compose_limits", {"compose_limits_reserve_mb": "abc"}, ["compose_limits_reserve_mb='abc' is not a whole number"]),
    ("swap", {"swap_state": "gone"}, ["swap_state='gone' is not one of present, absent"]),
    ("compose_limits", {"compose_limits_strict": "maybe"}, ["compose_limits_strict='maybe' is not true or false"]),
    ("restart_timer", {"restart_timer_modes": ["sometimes"]},
     ["restart_timer_modes=['sometimes'] is not a list of always, memory, unhealthy"]),
    ("relay_health", {"relay_health_max_memory_percent": "high"}, ["relay_health_max_memory_percent='high' is not a number"]),
    # The collection-wide variable is checked against each role's spec too.
    ("swap", {"sentry_selfhosted_relay_threshold": "x"}, ["sentry_selfhosted_relay_threshold='x' is not a number"]),
])
def test_one_sentence_per_refused_variable_naming_it_and_what_it_takes(role, values, expected):
    assert input_errors(values, role) == expected


def test_accepted_values_unknown_names_and_nulls_give_nothing():
    values = {"compose_limits_reserve_mb": "256", "compose_limits_ratio": 0.5, "swap_state": "present",
              "compose_limits_total_memory_mb": None, "not_in_the_spec": "abc"}
    assert input_errors(values, "compose_limits") == []
    assert input_errors(values, "swap") == []


def test_several_mistakes_give_several_sentences_sorted_by_name():
    errors = input_errors({"swap_swappiness": "x", "swap_state": "gone", "swap_force": "perhaps"}, "swap")
    assert [e.split("=")[0] for e in errors] == ["swap_force", "swap_state", "swap_swappiness"]


def test_a_secret_is_never_shown():
    # No secret of the specs can have a wrong type today (a str takes anything): the sentence's value part is checked.
    assert _shown("https://hooks.example/secret", {"type": "str", "no_log": True}) == "(hidden, it is a secret)"
    assert _shown("abc", {"type": "int"}) == "'abc'"


def test_a_role_without_a_spec_or_a_wrong_input_is_an_error():
    with pytest.raises(AnsibleFilterError, match="no argument spec for role 'nope'"):
        input_errors({}, "nope")
    with pytest.raises(AnsibleFilterError, match="expects a mapping"):
        input_errors(["swap_state"], "swap")


def test_known_variables_are_every_roles_options():
    known = known_variables()
    assert {"compose_limits_reserve_mb", "swap_file_size", "relay_health_max_memory_percent", "memory_alerts_state",
            "restart_timer_modes", "sentry_selfhosted_dir", "upgrade_ref"} <= known


@pytest.mark.parametrize("name, suggestion", [
    ("compose_limit_reserve_mb", "compose_limits_reserve_mb"),
    ("swap_size", "swap_file_size"),
    ("sentry_selfhosted_directory", "sentry_selfhosted_dir"),
    ("relay_health_max_memory_percentage", "relay_health_max_memory_percent"),
    ("restart_timer_mode", "restart_timer_modes"),
    ("site_serail", "site_serial"),
])
def test_a_misspelt_name_gets_the_likely_intended_one(name, suggestion):
    assert misspelt_variables([name, "inventory_hostname"], known=["site_serial"]) == [
        "%s is not a variable of sentry_selfhosted.memory: did you mean %s?" % (name, suggestion)]


def test_a_prefixed_name_far_from_every_known_one_is_still_named():
    warnings = misspelt_variables(["swap_zzzzzzzzzzzzzzzzzzzz"])
    assert warnings == ["swap_zzzzzzzzzzzzzzzzzzzz is not a variable of sentry_selfhosted.memory (no variable has a close "
                        "name; each role's README lists its variables)"]


def test_known_names_and_unrelated_names_give_no_warning():
    names = ["compose_limits_reserve_mb", "swap_file_size", "site_hosts", "ansible_check_mode", "inventory_hostname",
             "playbook_dir", "groups", "my_own_variable", "restart_services", "audit_hosts"]
    assert misspelt_variables(names, known=["site_hosts", "restart_services", "audit_hosts"]) == []


@pytest.mark.parametrize("value, error", [
    ("8G", None), (1073741824, None), ("1.5G", None), ("512MiB", None),
    ("8X", "size '8X' is not a size: give bytes (an integer) or a number with a unit such as 512M, 8G, 8GiB or 8GB"),
    (0, "size must be positive, got 0"),
])
def test_size_error_is_the_swapfile_modules_own_refusal(value, error):
    assert size_error(value) == error
