# SPDX-License-Identifier: GPL-3.0-or-later
"""The built tarball installs with no network (its dependencies already present) and its
playbooks run from the installed copy."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")


@pytest.fixture(scope="module")
def offline_install(tmp_path_factory):
    work = tmp_path_factory.mktemp("offline")
    subprocess.run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(work), REPO],
                   check=True, capture_output=True)
    tarball = next(p for p in work.iterdir() if p.name.endswith(".tar.gz"))
    target = work / "collections"
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    env = dict(os.environ)
    # The empty target first, then the ansible package's collections (ansible.posix).
    env["ANSIBLE_COLLECTIONS_PATH"] = "%s:%s" % (target, site)
    proc = subprocess.run([tool("ansible-galaxy"), "collection", "install", "--offline", "-p", str(target), str(tarball)],
                          env=env, capture_output=True, text=True, check=False)
    return target, env, proc


def test_tarball_installs_offline_with_dependencies_present(offline_install):
    target, dummy, proc = offline_install
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The dependencies were resolved (not skipped with --no-deps) and found installed.
    for dependency in ("ansible.posix",):
        assert "'%s:" % dependency in proc.stdout and "is already installed" in proc.stdout, proc.stdout
    installed = target / "ansible_collections" / "sentry_selfhosted" / "memory"
    with open(installed / "MANIFEST.json") as handle:
        manifest = json.load(handle)
    assert set(manifest["collection_info"]["dependencies"]) == {"ansible.posix"}
    assert (installed / "playbooks" / "audit.yml").exists()
    # Only this collection went into the empty path: the dependencies stayed where they were.
    assert sorted(p.name for p in (target / "ansible_collections").iterdir()) == ["sentry_selfhosted"]


def test_audit_runs_from_the_installed_copy_in_check_mode(offline_install):
    target, env, proc = offline_install
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = dict(env, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    # From another directory, so nothing of the source tree (adjacent collections, ansible.cfg) is picked up.
    run = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.audit", "--check",
                          "-e", "audit_containers=false", "-vv"],
                         cwd=str(target), env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(run.stdout[run.stdout.index("{"):])
    assert data["stats"]["localhost"]["changed"] == 0
    assert data["stats"]["localhost"]["failures"] == 0
    # The playbook and its module came from the offline install.
    installed = str(target / "ansible_collections" / "sentry_selfhosted" / "memory")
    assert os.path.join(installed, "playbooks", "audit.yml") in run.stdout + run.stderr
    tasks = [t["task"]["name"] for t in data["plays"][0]["tasks"]]
    assert "Read memory, swap, Relay's view and the containers" in tasks
