# SPDX-License-Identifier: GPL-3.0-or-later
"""shape_errors: the host programs' own check of a setting, applied to the role variable that sets it."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.filter.shape_errors import shape_errors


def test_accepted_values_give_no_sentence():
    assert shape_errors({"a_ratio": ["ratio", 0.9], "a_count": ["count", 0], "a_null": ["positive?", None],
                         "a_format": [["json", "slack"], "slack"], "a_list": ["strings", ["relay"]]}) == []


def test_one_sentence_per_refused_variable_naming_it():
    assert shape_errors({"restart_timer_ready_timeout": ["positive", 0], "memory_alerts_webhook_format": [["json", "slack"], "teams"],
                         "memory_alerts_trend_warning_hours": ["count", -1]}) == [
        "memory_alerts_trend_warning_hours must be 0 or more, got -1",
        "memory_alerts_webhook_format must be one of json, slack, got 'teams'",
        "restart_timer_ready_timeout must be positive, got 0",
    ]


def test_a_shape_the_programs_do_not_know_is_an_error_of_the_caller():
    with pytest.raises(AnsibleFilterError, match="no shape 'size' for x"):
        shape_errors({"x": ["size", 1]})
    with pytest.raises(AnsibleFilterError, match="expects a mapping"):
        shape_errors([])
