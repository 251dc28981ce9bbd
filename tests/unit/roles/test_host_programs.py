# SPDX-License-Identifier: GPL-3.0-or-later
"""The host programs as the host_program module lays them out: one directory holding both
programs and the collection's module_utils, run by a plain python3 that cannot import Ansible."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
PROGRAMS = {
    "sentry_relay_restart.py": os.path.join(REPO, "roles", "restart_timer", "files", "sentry_relay_restart.py"),
    "sentry_memory_alerts.py": os.path.join(REPO, "roles", "memory_alerts", "files", "sentry_memory_alerts.py"),
}
# -I: no PYTHONPATH, no user site, no script directory; -S: no site-packages (where Ansible lives); -B: no .pyc.
PLAIN = [sys.executable, "-I", "-S", "-B"]


def shipped_module_utils():
    from ansible_collections.sentry_selfhosted.memory.plugins.modules import host_program
    return list(host_program.MODULE_UTILS)


def shipped_programs():
    from ansible_collections.sentry_selfhosted.memory.plugins.modules import host_program
    return list(host_program.PROGRAMS)


@pytest.fixture
def libexec(tmp_path):
    """/usr/local/libexec/sentry-selfhosted-memory as the host_program module fills it."""
    directory = tmp_path / "libexec"
    directory.mkdir()
    for name, source in PROGRAMS.items():
        shutil.copy(source, str(directory / name))
    for name in shipped_module_utils():
        shutil.copy(os.path.join(REPO, "plugins", "module_utils", name), str(directory / name))
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


def imported_by_file_name(path):
    """The modules a host program, or a module_utils copied beside it, imports by file name."""
    with open(path) as handle:
        text = handle.read()
    return set(re.findall(r"^import (\w+) as \w+  # noqa", text, re.M)
               + re.findall(r"^ +from (\w+) import \w+  # pylint: disable=import-error", text, re.M))


def test_the_installer_ships_exactly_what_the_programs_import():
    """What the programs import by file name, and what those import in turn (host_program imports managed_file)."""
    shipped = set(name[:-3] for name in shipped_module_utils())
    for path in PROGRAMS.values():
        imported, todo = set(), imported_by_file_name(path)
        while todo:
            name = todo.pop()
            imported.add(name)
            todo |= imported_by_file_name(os.path.join(REPO, "plugins", "module_utils", name + ".py")) - imported
        assert imported == shipped, path
    assert sorted(shipped_programs()) == sorted(PROGRAMS)


UNIT_TEMPLATES = [os.path.join(REPO, "roles", "memory_alerts", "templates", "sentry-memory-alerts.service.j2"),
                  os.path.join(REPO, "roles", "restart_timer", "templates", "sentry-relay-restart.service.j2")]


@pytest.mark.parametrize("template", UNIT_TEMPLATES, ids=os.path.basename)
def test_the_units_run_the_programs_isolated_and_writing_no_bytecode_beside_them(libexec, template):
    with open(template) as handle:
        exec_start = re.search(r"(?m)^ExecStart=\{\{ \w+ \}\} ((?:-\w+ )+)\{\{", handle.read())
    flags = exec_start.group(1).split()
    assert "-I" in flags and "-B" in flags, flags
    # With those flags the program still imports the module_utils beside it, and leaves no __pycache__ there
    # (root's would be removed by every install, and one another user could write would run as root).
    for program in sorted(PROGRAMS):
        proc = subprocess.run([sys.executable] + flags + [str(libexec / program), "--help"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(str(libexec))) == sorted(list(PROGRAMS) + shipped_module_utils())
