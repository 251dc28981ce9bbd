# SPDX-License-Identifier: GPL-3.0-or-later
"""The relay_health role on localhost with a temporary checkout: a restart that
fails is recorded and done on the next run.

There is no Docker engine here: the docker CLI is the recording stand-in
(tests/stand-ins/docker_cli.py, through fakes.docker_cli), the one test
double, at the engine's boundary. A file `fail` in its directory makes the
calls containing its text fail, as a stopped engine would.
"""

import json
import os
import shutil
import stat
import subprocess

import pytest

import checkouts
import fakes
from conftest import REPO, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
FIXTURE = checkouts.FIXTURE


@pytest.fixture
def checkout(tmp_path):
    target = tmp_path / "sentry"
    shutil.copytree(FIXTURE, str(target))
    return target


@pytest.fixture
def docker(tmp_path):
    """A `docker` on the PATH answering from tmp_path/standin; relay, nginx and web run."""
    directory = tmp_path / "standin"
    directory.mkdir()
    (directory / "running").write_text("nginx\nrelay\nweb\n")
    bin_dir = tmp_path / "bin"
    fakes.docker_cli(bin_dir)
    return directory, bin_dir


def calls(directory):
    path = directory / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["command"] for line in path.read_text().splitlines()]


def play(tmp_path, ansible_env, checkout, docker, *extra):
    directory, bin_dir = docker
    role_vars = {"sentry_selfhosted_dir": str(checkout), "relay_health_restart_timeout": 5}
    # The record's place is the role's own (vars/main.yml); an extra variable moves it off this machine's /var/lib.
    extra = list(extra) + ["-e", "__relay_health_pending_restart_file=%s" % (tmp_path / "state" / "relay-restart-pending.json")]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"name": "Relay", "hosts": "localhost", "gather_facts": False,
                                     "roles": [{"role": "sentry_selfhosted.memory.relay_health", "vars": role_vars}]}]))
    env = dict(ansible_env, DOCKER_STANDIN_DIR=str(directory), PATH="%s:%s" % (bin_dir, ansible_env["PATH"]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, str(playbook)] + extra,
                          env=env, capture_output=True, text=True, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_a_failed_restart_is_finished_on_the_next_run(tmp_path, ansible_env, checkout, docker):
    directory, _bin = docker
    pending = tmp_path / "state" / "relay-restart-pending.json"
    config = checkout / "relay" / "config.yml"

    # The engine refuses the restart: the file has the new settings, the restart is recorded as pending.
    (directory / "fail").write_text("restart")
    rc, data = play(tmp_path, ansible_env, checkout, docker)
    assert rc != 0 and data["stats"]["localhost"]["failures"] == 1
    assert "max_memory_percent: 0.95" in config.read_text()
    record = json.loads(pending.read_text())
    assert record["project_dir"] == str(checkout) and "health.max_memory_percent" in record["changed_keys"]
    info = os.stat(str(pending))
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o644

    # Still refused: the file is unchanged, but the restart is tried again and stays pending.
    before = len(calls(directory))
    rc, data = play(tmp_path, ansible_env, checkout, docker)
    assert rc != 0
    assert any(c.startswith("compose restart relay") for c in calls(directory)[before:])
    assert pending.exists()

    # Check mode says it would restart, asks no engine, and leaves the record.
    (directory / "fail").unlink()
    before = len(calls(directory))
    rc, data = play(tmp_path, ansible_env, checkout, docker, "--check")
    assert rc == 0 and calls(directory)[before:] == [] and pending.exists()

    # The engine is back: relay restarts, the record goes.
    rc, data = play(tmp_path, ansible_env, checkout, docker)
    assert rc == 0, data
    assert any(c.startswith("compose restart relay") for c in calls(directory)[before:])
    assert not pending.exists()

    # Nothing left to do.
    before = len(calls(directory))
    rc, data = play(tmp_path, ansible_env, checkout, docker)
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 0
    assert calls(directory)[before:] == []
