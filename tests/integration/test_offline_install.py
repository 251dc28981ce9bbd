# SPDX-License-Identifier: GPL-3.0-or-later
"""The built tarball installs with no network and no other collection (ansible-core alone), and its
playbooks parse and run from the installed copy."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, built_tarball, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")


@pytest.fixture(scope="module")
def offline_install(tmp_path_factory):
    work = tmp_path_factory.mktemp("offline")
    tarball = built_tarball(work)
    target = work / "collections"
    env = dict(os.environ)
    # Only the empty target: the ansible package's collections in site-packages stay out of sight,
    # as on a machine with ansible-core alone.
    env["ANSIBLE_COLLECTIONS_PATH"] = str(target)
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "False"
    proc = subprocess.run([tool("ansible-galaxy"), "collection", "install", "--offline", "-p", str(target), str(tarball)],
                          env=env, capture_output=True, text=True, check=False)
    return target, env, proc


def test_tarball_installs_offline_with_ansible_core_alone(offline_install):
    target, dummy, proc = offline_install
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = target / "ansible_collections" / "sentry_selfhosted" / "memory"
    with open(installed / "MANIFEST.json") as handle:
        manifest = json.load(handle)
    assert manifest["collection_info"]["dependencies"] == {}
    assert (installed / "playbooks" / "audit.yml").exists()
    assert sorted(p.name for p in (target / "ansible_collections").iterdir()) == ["sentry_selfhosted"]


@pytest.mark.parametrize("playbook", ["audit", "site", "restart", "upgrade"])
def test_every_playbook_parses_with_ansible_core_alone(offline_install, playbook):
    target, env, proc = offline_install
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.%s" % playbook, "--syntax-check"],
                         cwd=str(target), env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_nothing_names_a_module_of_another_collection():
    """Roles, playbooks and task files use ansible.builtin and this collection only (no Galaxy needed)."""
    pattern = re.compile(r"^\s*-?\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:", re.M)
    others = []
    for top in ("roles", "playbooks", "tasks"):
        for folder, _dirs, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    with open(os.path.join(folder, name)) as handle:
                        found = set(pattern.findall(handle.read())) - {"ansible.builtin", "sentry_selfhosted.memory"}
                    others += ["%s: %s" % (os.path.relpath(os.path.join(folder, name), REPO), c) for c in sorted(found)]
    assert others == []


def test_audit_runs_from_the_installed_copy_in_check_mode(offline_install):
    target, env, proc = offline_install
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ansible-core's own default callback: its json callback lives in ansible.posix, which is not there.
    env = dict(env, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_NOCOLOR="1")
    # From another directory, so nothing of the source tree (adjacent collections, ansible.cfg) is picked up.
    run = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.audit", "--check",
                          "-e", "audit_containers=false", "-vv"],
                         cwd=str(target), env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", run.stdout), run.stdout[-2000:]
    # The playbook and its module came from the offline install.
    installed = str(target / "ansible_collections" / "sentry_selfhosted" / "memory")
    assert os.path.join(installed, "playbooks", "audit.yml") in run.stdout + run.stderr
    assert "TASK [Read memory, swap, Relay's view and the containers]" in run.stdout
