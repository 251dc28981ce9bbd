# SPDX-License-Identifier: GPL-3.0-or-later
"""relay_health's handler against a real engine: relay restarted, nginx reloaded, readiness awaited.

The role (installed collection, real ansible-playbook) changes relay/config.yml,
which notifies the handler; the handler runs the relay_restart module.
"""

import os

import pytest

from conftest import run_playbook

HANDLER = "Relay_health restart relay"
LOCK = "/run/sentry-selfhosted-memory/restart.lock"


@pytest.fixture
def play(stack, tmp_path):
    """Run relay_health on the checkout; returns (rc, the handler's result or None, the whole JSON)."""
    config = os.path.join(stack.dir, "relay", "config.yml")
    with open(config) as handle:
        shipped = handle.read()
    lock_existed = os.path.exists(LOCK)

    def run(**role_vars):
        role_vars = dict(dict(sentry_selfhosted_dir=stack.dir, relay_health_backup=False), **role_vars)
        returncode, data = run_playbook(tmp_path / "play.yml", [{
            "name": "Relay health", "hosts": "localhost", "gather_facts": False,
            "roles": [{"role": "sentry_selfhosted.memory.relay_health", "vars": role_vars}]}])
        handler = None
        for item in data["plays"][0]["tasks"]:
            if item["task"]["name"].endswith(HANDLER):
                handler = item["hosts"]["localhost"]
        return returncode, handler, data
    yield run
    stack.set_relay_ready(True)
    with open(config, "w") as handle:
        handle.write(shipped)
    # The module's restart lock is a host file: leave the host as the test found it.
    if not lock_existed and os.path.exists(LOCK):
        os.remove(LOCK)


def test_a_change_restarts_relay_reloads_nginx_and_waits_until_ready(stack, play):
    relay_id = stack.inspect("relay")["Id"]
    starts, reloads = len(stack.log("relay.log")), len(stack.log("nginx.log"))
    rc, handler, data = play(relay_health_max_memory_percent=0.9, relay_health_restart_timeout=30)
    assert rc == 0, data
    assert handler is not None, "the handler did not run: %s" % [t["task"]["name"] for t in data["plays"][0]["tasks"]]
    assert handler["actions"] == ["restart relay", "reload nginx", "wait for relay ready"]
    assert handler["ready"] is True and handler["release"] == "24.8.0"
    assert stack.inspect("relay")["Id"] == relay_id, "a restart keeps the container"
    assert len(stack.log("relay.log")) == starts + 1
    assert stack.log("nginx.log")[reloads:] and stack.log("nginx.log")[-1].startswith("reload relay=")
    assert stack.relay_ready_status() == 200

    # Nothing changes: no handler, no restart.
    rc, handler, data = play(relay_health_max_memory_percent=0.9, relay_health_restart_timeout=30)
    assert rc == 0 and handler is None
    assert len(stack.log("relay.log")) == starts + 1


def test_a_relay_that_stays_at_503_fails_the_handler_clearly(stack, play):
    stack.set_relay_ready(False)
    starts = len(stack.log("relay.log"))
    rc, handler, data = play(relay_health_max_memory_percent=0.85, relay_health_restart_timeout=4)
    assert rc != 0
    assert handler is not None and handler.get("failed") is True
    assert "Relay is not ready 4 s after the restart" in handler["msg"]
    assert handler["ready"] is False
    assert len(stack.log("relay.log")) == starts + 1, "relay was restarted before the wait"
