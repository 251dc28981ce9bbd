# SPDX-License-Identifier: GPL-3.0-or-later
"""The host programs as tasks/host_program.yml lays them out: one directory holding both
programs and the collection's module_utils, run by a plain python3 that cannot import Ansible."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
PROGRAMS = {
    "sentry_relay_restart.py": os.path.join(REPO, "roles", "restart_timer", "files", "sentry_relay_restart.py"),
    "sentry_memory_alerts.py": os.path.join(REPO, "roles", "memory_alerts", "files", "sentry_memory_alerts.py"),
}
# -I: no PYTHONPATH, no user site, no script directory; -S: no site-packages (where Ansible lives); -B: no .pyc.
PLAIN = [sys.executable, "-I", "-S", "-B"]


def shipped_vars():
    with open(os.path.join(REPO, "tasks", "host_program.yml")) as handle:
        return yaml.safe_load(handle)[0]["vars"]


@pytest.fixture
def libexec(tmp_path):
    """/usr/local/libexec/sentry-selfhosted-memory as the shared task file fills it."""
    directory = tmp_path / "libexec"
    directory.mkdir()
    for name, source in PROGRAMS.items():
        shutil.copy(source, str(directory / name))
    for item in shipped_vars()["__host_program_module_utils"]:
        shutil.copy(os.path.join(REPO, "plugins", "module_utils", item["dest"]), str(directory / item["dest"]))
    return directory


def test_plain_python_cannot_import_ansible():
    proc = subprocess.run(PLAIN + ["-c", "import ansible"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "No module named 'ansible'" in proc.stderr


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_shipped_program_runs_without_ansible(libexec, program):
    proc = subprocess.run(PLAIN + [str(libexec / program), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout


def test_shipped_restart_program_goes_as_far_as_its_checks_without_ansible(libexec, tmp_path):
    config = tmp_path / "restart.json"
    config.write_text(json.dumps({"project_dir": str(tmp_path / "nowhere")}))
    proc = subprocess.run(PLAIN + [str(libexec / "sentry_relay_restart.py"), "--config", str(config)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "is not a self-hosted checkout" in proc.stdout and proc.stderr == ""


def test_shipped_alerts_program_goes_as_far_as_its_checks_without_ansible(libexec, tmp_path):
    config = tmp_path / "alerts.json"
    config.write_text(json.dumps({"warning_ratio": 0.99}))
    proc = subprocess.run(PLAIN + [str(libexec / "sentry_memory_alerts.py"), "--config", str(config)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "warning_ratio < critical_ratio" in proc.stdout and proc.stderr == ""


def test_the_task_file_ships_exactly_what_the_programs_import():
    shipped = sorted(item["dest"][:-3] for item in shipped_vars()["__host_program_module_utils"])
    for path in PROGRAMS.values():
        with open(path) as handle:
            imported = sorted(re.findall(r"^import (\w+) as \w+  # noqa", handle.read(), re.M))
        assert imported == shipped, path
    assert sorted(shipped_vars()["__host_program_programs"]) == sorted(PROGRAMS)
