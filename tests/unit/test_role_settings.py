# SPDX-License-Identifier: GPL-3.0-or-later
"""The timer roles' settings are declared once, in meta/argument_specs.yml: hacking/role_settings.py writes the
role defaults, the programs' defaults and the configuration mapping from it, and fails when a copy is stale."""

import importlib
import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "hacking", "role_settings.py")
ROLES = {"memory_alerts": "sentry_memory_alerts.py", "restart_timer": "sentry_relay_restart.py"}


def run(script, *args):
    return subprocess.run([sys.executable, script] + list(args), capture_output=True, text=True, check=False)


@pytest.fixture
def tree(tmp_path):
    """A copy of the script and the two roles, to change without touching the checkout."""
    shutil.copytree(os.path.join(REPO, "hacking"), str(tmp_path / "hacking"))
    for role in ROLES:
        shutil.copytree(os.path.join(REPO, "roles", role), str(tmp_path / "roles" / role))
    return tmp_path


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_every_copy_is_current():
    proc = run(SCRIPT, "--check")
    assert proc.returncode == 0, proc.stderr
    for role in ROLES:
        with open(os.path.join(REPO, "roles", role, "vars", "main.yml")) as handle:
            role_vars = yaml.safe_load(handle)
        assert role_vars["__%s_settings" % role] and role_vars["__%s_shapes" % role], role


def test_a_changed_default_makes_every_copy_stale_until_written(tree):
    spec = tree / "roles" / "memory_alerts" / "meta" / "argument_specs.yml"
    edit(spec, "        default: 240\n", "        default: 60\n")
    proc = run(str(tree / "hacking" / "role_settings.py"), "--check")
    assert proc.returncode == 1
    assert "roles/memory_alerts/defaults/main.yml" in proc.stderr
    assert "roles/memory_alerts/files/sentry_memory_alerts.py" in proc.stderr
    assert run(str(tree / "hacking" / "role_settings.py")).returncode == 0
    assert run(str(tree / "hacking" / "role_settings.py"), "--check").returncode == 0
    defaults = yaml.safe_load((tree / "roles" / "memory_alerts" / "defaults" / "main.yml").read_text())
    assert defaults["memory_alerts_resend_interval_minutes"] == 60
    # The program counts seconds.
    program = (tree / "roles" / "memory_alerts" / "files" / "sentry_memory_alerts.py").read_text()
    assert '"resend_interval_seconds": ("count", 3600),  # memory_alerts_resend_interval_minutes' in program


def test_a_new_linked_setting_reaches_the_defaults_the_mapping_and_the_check(tree):
    spec = tree / "roles" / "restart_timer" / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text() + "      restart_timer_rate_window:\n        type: int\n        default: 3600\n"
                                       "        description: Seconds over which restart_timer_max_restarts counts.\n")
    program = tree / "roles" / "restart_timer" / "files" / "sentry_relay_restart.py"
    edit(program, '"rate_window": ("positive", 86400),', '"rate_window": ("positive", 86400),  # restart_timer_rate_window')
    assert run(str(tree / "hacking" / "role_settings.py")).returncode == 0
    assert '"rate_window": ("positive", 3600),  # restart_timer_rate_window' in program.read_text()
    role_vars = yaml.safe_load((tree / "roles" / "restart_timer" / "vars" / "main.yml").read_text())
    assert role_vars["__restart_timer_settings"]["rate_window"] == "{{ restart_timer_rate_window | int }}"
    assert role_vars["__restart_timer_shapes"]["restart_timer_rate_window"] == ["positive", "{{ restart_timer_rate_window }}"]
    defaults = yaml.safe_load((tree / "roles" / "restart_timer" / "defaults" / "main.yml").read_text())
    assert defaults["restart_timer_rate_window"] == 3600


@pytest.mark.parametrize("old, new, message", [
    ("# restart_timer_max_restarts", "# restart_timer_max_restart", "names restart_timer_max_restart, which"),
    ('"max_restarts": ("positive"', '"max_restarts": ("ratio"', "row max_restarts has the shape \"ratio\""),
    ('"relay_threshold": ("ratio?"', '"relay_threshold": ("ratio"', "row relay_threshold has the shape \"ratio\""),
    ('"services": ("strings"', '"services": ("string"', "row services has the shape \"string\""),
])
def test_a_row_that_does_not_fit_the_spec_is_refused(tree, old, new, message):
    edit(tree / "roles" / "restart_timer" / "files" / "sentry_relay_restart.py", old, new)
    proc = run(str(tree / "hacking" / "role_settings.py"), "--check")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_choices_must_be_the_programs():
    spec = os.path.join(REPO, "roles", "memory_alerts", "meta", "argument_specs.yml")
    with open(spec) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    sys.path.insert(0, os.path.join(REPO, "hacking"))
    try:
        role_settings = importlib.import_module("role_settings")
    finally:
        sys.path.pop(0)
    role = role_settings.Role("memory_alerts")
    role.check_fit("webhook_format", '("json", "slack")', dict(options["memory_alerts_webhook_format"], name="x"))
    with pytest.raises(role_settings.SpecError, match="does not fit x's type, choices or default"):
        role.check_fit("webhook_format", '("json", "teams")', dict(options["memory_alerts_webhook_format"], name="x"))


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_roles_variables_keep_their_names(role):
    """The defaults hold the role's own options, in the spec's order, and nothing else."""
    base = os.path.join(REPO, "roles", role)
    with open(os.path.join(base, "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    with open(os.path.join(base, "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    assert list(defaults) == [name for name in options if name.startswith(role + "_")]
