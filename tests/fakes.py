# SPDX-License-Identifier: GPL-3.0-or-later
"""The test doubles the unit and integration tests share, each at one boundary.

- Clock: the wall clock and sleep (time.time, time.sleep) of code that waits;
  real waits would take the minutes a probe loop allows.
- ModuleExit, raise_module_exits: AnsibleModule.exit_json and fail_json, which
  end the process; a test runs a module's main() in-process instead.
- docker_cli: the `docker` CLI, that is the Docker engine behind it, which
  cannot run here; the program is tests/stand-ins/docker_cli.py, the one
  docker CLI stand-in, which the molecule scenarios install in their boxes too.

Checkouts are not doubles: they come from tests/checkouts.py.
"""

import os
import sys

from ansible.module_utils import basic

DOCKER_CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stand-ins", "docker_cli.py")


class Clock:
    """Time that passes only when slept: a probe loop ends at once instead of in real minutes."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ModuleExit(Exception):
    """A module's exit_json ("exit") or fail_json ("fail"), with its result."""

    def __init__(self, kind, result):
        Exception.__init__(self, kind)
        self.kind = kind
        self.result = result


def raise_module_exits(monkeypatch):
    """Make AnsibleModule.exit_json and fail_json raise ModuleExit, so a test can run a module's main()."""
    def exit_json(module, **result):
        raise ModuleExit("exit", result)

    def fail_json(module, **result):
        raise ModuleExit("fail", result)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


def docker_cli(bin_dir):
    """An executable ``docker`` in ``bin_dir`` (made) running the docker CLI stand-in; returns its path.

    The stand-in answers from and records into DOCKER_STANDIN_DIR, which the caller sets.
    """
    os.makedirs(str(bin_dir), exist_ok=True)
    path = os.path.join(str(bin_dir), "docker")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\nexec %s %s "$@"\n' % (sys.executable, DOCKER_CLI))
    os.chmod(path, 0o755)
    return path
