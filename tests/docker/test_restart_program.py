# SPDX-License-Identifier: GPL-3.0-or-later
"""restart_timer's restart program run directly against a real engine, as its unit runs it.

The program is taken from the installed collection with copies of host_memory.py
and sentry_compose.py beside it, as the role installs it; its lock and state
file live in the test's temporary directory.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

COLLECTION = os.path.join(os.environ.get("SENTRY_MEMORY_COLLECTIONS", ""), "ansible_collections", "sentry_selfhosted", "memory")


@pytest.fixture
def program(stack, tmp_path):
    """Run the program with these config keys; returns a Popen (stdout text)."""
    for source in ("roles/restart_timer/files/sentry_relay_restart.py", "plugins/module_utils/host_memory.py",
                   "plugins/module_utils/host_program.py", "plugins/module_utils/managed_file.py",
                   "plugins/module_utils/sentry_compose.py"):
        shutil.copy(os.path.join(COLLECTION, source), str(tmp_path))

    def start(**config):
        config = dict(dict(project_dir=stack.dir, lock_path=str(tmp_path / "restart.lock"),
                           state_file=str(tmp_path / "restarts.json"), ready_timeout=20), **config)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return subprocess.Popen([sys.executable, str(tmp_path / "sentry_relay_restart.py"), "--config", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield start
    stack.set_relay_ready(True)


def finish(proc, timeout=60):
    out = proc.communicate(timeout=timeout)[0]
    return proc.returncode, out


def test_memory_mode_below_the_threshold_restarts_nothing(stack, program):
    starts = len(stack.log("relay.log"))
    rc, out = finish(program(modes=["memory"], memory_threshold=0.99))
    assert rc == 0, out
    assert "no restart needed" in out
    assert len(stack.log("relay.log")) == starts


def test_unhealthy_mode_acts_only_on_a_503_from_the_memory_probe(stack, program):
    starts = len(stack.log("relay.log"))
    reloads = len([line for line in stack.log("nginx.log") if line.startswith("reload")])
    # Ready: nothing to do.
    rc, out = finish(program(modes=["unhealthy"]))
    assert rc == 0 and "no restart needed" in out, out
    # 503 while Relay's memory figure is fine: a restart would not fix it (exit 3).
    stack.set_relay_ready(False)
    rc, out = finish(program(modes=["unhealthy"], relay_threshold=0.95))
    assert rc == 3, out
    assert len(stack.log("relay.log")) == starts
    # 503 and the memory probe over its threshold: restart relay, reload nginx, wait until ready.
    proc = program(modes=["unhealthy"], relay_threshold=0.001)
    deadline = time.monotonic() + 30
    while len(stack.log("relay.log")) == starts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(stack.log("relay.log")) == starts + 1, "relay was not restarted"
    stack.set_relay_ready(True)
    rc, out = finish(proc)
    assert rc == 0, out
    lines = out.splitlines()
    order = [next(i for i, line in enumerate(lines) if text in line)
             for text in ("restarting relay", "reloading nginx", "relay ready after")]
    assert order == sorted(order), out
    assert len([line for line in stack.log("nginx.log") if line.startswith("reload")]) == reloads + 1


def test_the_lock_keeps_a_second_restart_out(stack, program, tmp_path):
    starts = len(stack.log("relay.log"))
    with open(str(tmp_path / "restart.lock"), "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        rc, out = finish(program(modes=["always"]))
    assert rc == 0 and "standing aside" in out, out
    assert len(stack.log("relay.log")) == starts
    # Free again: mode always restarts.
    rc, out = finish(program(modes=["always"]))
    assert rc == 0, out
    assert len(stack.log("relay.log")) == starts + 1
