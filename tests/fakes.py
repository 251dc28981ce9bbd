# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-ins the unit tests share: a clock that moves only when slept, a module's exits as an exception, and the
smallest self-hosted checkout the collection accepts."""

from ansible.module_utils import basic


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


def minimal_checkout(path, relay_release="24.8.0"):
    """The smallest directory the collection takes for a self-hosted checkout, at ``path`` (made); returns ``path``."""
    (path / "relay").mkdir(parents=True)
    (path / "docker-compose.yml").write_text("services: {}\n")
    (path / ".env").write_text("RELAY_IMAGE=getsentry/relay:%s\n" % relay_release)
    return path
