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


# --- root's program directory: only the collection's files, root's alone --------------------------------------

TASKS = os.path.join(REPO, "tasks", "host_program.yml")
UNIT_TEMPLATES = [os.path.join(REPO, "roles", "memory_alerts", "templates", "sentry-memory-alerts.service.j2"),
                  os.path.join(REPO, "roles", "restart_timer", "templates", "sentry-relay-restart.service.j2")]
LIBEXEC = "/usr/local/libexec/sentry-selfhosted-memory"


def install_tasks():
    """The loader, the shared variables and the Install block's tasks (by name) as ansible-core loads them."""
    from ansible.parsing.dataloader import DataLoader
    loader = DataLoader()
    play = loader.load_from_file(TASKS, trusted_as_template=True)[0]
    install = next(task for task in play["block"] if task["name"] == "Install")
    return loader, dict(play["vars"], role_path="/roles/x"), install["block"]


def render(loader, variables, value):
    from ansible.template import Templar, trust_as_template
    if isinstance(value, str) and "{{" not in value:  # a bare condition, as `when:` holds
        value = trust_as_template("{{ (%s) }}" % value)
    return Templar(loader=loader, variables=variables).template(value)


def entry(name, uid=0, mode="0644", kind="isreg"):
    """One file as ansible.builtin.find describes it."""
    kinds = dict.fromkeys(("isreg", "isdir", "islnk", "ischr", "isblk", "isfifo", "issock"), False)
    kinds[kind] = True
    return dict(kinds, path="%s/%s" % (LIBEXEC, name), uid=uid, pw_name="root" if uid == 0 else "", mode=mode,
                wgrp=bool(int(mode, 8) & 0o020), woth=bool(int(mode, 8) & 0o002))


def test_the_install_removes_from_the_program_directory_all_but_the_collections_own_files():
    loader, variables, tasks = install_tasks()
    names = [task["name"] for task in tasks]
    remove = next(task for task in tasks if task["name"].startswith("Remove from the program directory"))
    look = tasks[names.index(remove["name"]) - 1]
    # Every entry is looked at, hidden ones too; after the directory is made root's, before the copies go in.
    assert look["ansible.builtin.find"]["file_type"] == "any" and look["ansible.builtin.find"]["hidden"] is True
    assert names.index("Make the program, configuration and state directories (root's)") < names.index(look["name"])
    assert names.index(remove["name"]) < names.index("Install the program and the collection's module_utils it imports")
    entries = [
        entry("host_memory.py"), entry("sentry_memory_alerts.py"), entry("sentry_relay_restart.py", mode="0600"),
        entry("host_program.py", uid=1000),  # another user's copy
        entry("sentry_compose.py", mode="0664"),  # root's, but the group may write it
        entry("json.py"),  # shadows the standard library
        entry("__pycache__", mode="0777", kind="isdir"),
        entry(".sentry_compose.py.tmp"),
        entry("host_memory.pyc", kind="islnk", mode="0777"),
    ]
    variables["__host_program_libexec_entries"] = {"files": entries, "matched": len(entries)}
    removed = render(loader, dict(variables, **remove.get("vars", {})), remove["loop"])
    assert sorted(os.path.basename(e["path"]) for e in removed) == [
        ".sentry_compose.py.tmp", "__pycache__", "host_memory.pyc", "host_program.py", "json.py", "sentry_compose.py"]
    assert remove["ansible.builtin.file"] == {"path": "{{ item.path }}", "state": "absent"}
    # Each removal says what it was.
    labels = [render(loader, dict(variables, item=e), remove["loop_control"]["label"]).strip() for e in removed]
    assert "%s/host_program.py (file of uid 1000, mode 0644)" % LIBEXEC in labels
    assert "%s/__pycache__ (directory of root, mode 0777)" % LIBEXEC in labels
    # A second run finds only what stays: nothing to remove (and, with the directory just made, nothing is looked at).
    variables["__host_program_libexec_entries"] = {"files": [e for e in entries if e not in removed]}
    assert render(loader, dict(variables, **remove.get("vars", {})), remove["loop"]) == []
    variables["__host_program_libexec_entries"] = {"skipped": True}
    assert render(loader, dict(variables, **remove.get("vars", {})), remove["loop"]) == []


def test_the_install_refuses_a_program_directory_that_is_a_symlink_before_it_changes_anything():
    loader, variables, tasks = install_tasks()
    names = [task["name"] for task in tasks]
    refuse = tasks[names.index("Refuse a program directory that is a symlink")]
    look = tasks[names.index(refuse["name"]) - 1]
    assert look["ansible.builtin.stat"]["path"] == "{{ __host_program_libexec }}"
    assert look["ansible.builtin.stat"].get("follow", False) is False
    assert names.index(refuse["name"]) < names.index("Make the program, configuration and state directories (root's)")
    cases = [({"exists": True, "islnk": True, "lnk_source": "/home/mallory/lib"}, True),
             ({"exists": True, "islnk": False, "isdir": True}, False), ({"exists": False}, False)]
    for found, refused in cases:
        variables[look["register"]] = {"stat": found}
        assert render(loader, variables, refuse["when"]) is refused, found
    variables[look["register"]] = {"stat": cases[0][0]}
    message = render(loader, variables, refuse["ansible.builtin.fail"]["msg"])
    assert "%s is a symlink (to /home/mallory/lib)" % LIBEXEC in message


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
    assert sorted(os.listdir(str(libexec))) == sorted(list(PROGRAMS) + [
        item["dest"] for item in shipped_vars()["__host_program_module_utils"]])
