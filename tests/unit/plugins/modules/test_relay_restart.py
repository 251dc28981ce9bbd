# SPDX-License-Identifier: GPL-3.0-or-later
"""The relay_restart module: interface, check mode, failures; host_program.run_command is patched at the docker CLI boundary."""

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program
from ansible_collections.sentry_selfhosted.memory.plugins.modules import relay_restart

from checkouts import minimal_checkout
from fakes import ModuleExit, raise_module_exits

CONFIG_24 = {"services": {"nginx": {"depends_on": {"relay": {"condition": "service_started", "required": True}}},
                          "relay": {}, "web": {}}}
CONFIG_26 = {"services": {"nginx": {"depends_on": {"relay": {"condition": "service_started", "restart": True}}},
                          "relay": {}, "web": {}}}


@pytest.fixture
def checkout(tmp_path):
    return minimal_checkout(tmp_path / "sentry")


@pytest.fixture
def docker(monkeypatch, tmp_path):
    """A docker CLI answering like Compose v2 does; ``fail`` names words that make a call fail."""

    class Docker:
        running = ["web", "relay", "nginx"]
        config = CONFIG_24
        fail = None
        calls = []

        def answer(self, argv):
            words = argv[1:]
            if "--project-directory" in words:
                words = words[words.index("--project-directory") + 2:]
                while words and words[0] == "--env-file":
                    words = words[2:]
            line = " ".join(words)
            self.calls.append(line)
            if self.fail and self.fail in line:
                return 1, "", "failed as asked"
            if words[:2] == ["compose", "version"]:
                return 0, "2.40.3\n", ""
            if words[:1] == ["ps"]:
                return 0, "\n".join(self.running) + "\n", ""
            if words[:1] == ["config"]:
                return 0, json.dumps(self.config), ""
            return 0, "", ""

    fake = Docker()
    fake.calls = []

    def run_command(argv, timeout=60):
        return fake.answer(argv)

    monkeypatch.setattr(host_program, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda module, name, required=False, opt_dirs=None: "/usr/bin/docker")

    raise_module_exits(monkeypatch)
    monkeypatch.setattr(relay_restart.sc, "DEFAULT_LOCK_PATH", str(tmp_path / "restart.lock"))
    return fake


def run_module(args):
    with patch_module_args(args):
        with pytest.raises(ModuleExit) as caught:
            relay_restart.main()
    return caught.value


def actions(calls):
    return [c for c in calls if c.startswith(("restart", "exec"))]


def test_restart_reload_and_ready_on_24(checkout, docker):
    done = run_module({"project_dir": str(checkout)})
    assert done.kind == "exit"
    assert done.result["changed"] is True
    assert done.result["ready"] is True
    assert done.result["actions"] == ["restart relay", "reload nginx", "wait for relay ready"]
    assert done.result["release"] == "24.8.0"
    assert actions(docker.calls) == ["restart relay", "exec -T nginx nginx -s reload",
                                     "exec -T nginx wget -q -O /dev/null -T 5 http://relay:3000/api/relay/healthcheck/ready/"]


def test_26_uses_relay_cli_and_no_reload(checkout, docker):
    (checkout / ".env").write_text("RELAY_IMAGE=ghcr.io/getsentry/relay:26.8.0\n")
    docker.config = CONFIG_26
    done = run_module({"project_dir": str(checkout)})
    assert done.result["actions"] == ["restart relay", "wait for relay ready"]
    assert actions(docker.calls)[-1] == "exec -T relay /bin/relay healthcheck --mode ready"


def test_check_mode_reports_and_does_nothing(checkout, docker):
    done = run_module({"project_dir": str(checkout), "_ansible_check_mode": True})
    assert done.kind == "exit"
    assert done.result["changed"] is True
    assert done.result["actions"] == ["restart relay", "reload nginx", "wait for relay ready"]
    assert actions(docker.calls) == []


def test_not_ready_by_the_timeout_fails_clearly(checkout, docker):
    docker.fail = "healthcheck/ready"
    done = run_module({"project_dir": str(checkout), "timeout": 1})
    assert done.kind == "fail"
    assert "Relay is not ready 1 s after the restart" in done.result["msg"]
    assert done.result["ready"] is False
    assert done.result["changed"] is True


def test_restart_failure_fails(checkout, docker):
    docker.fail = "restart"
    done = run_module({"project_dir": str(checkout)})
    assert done.kind == "fail"
    assert "restart relay failed" in done.result["msg"]
    assert not any(c.startswith("exec") for c in docker.calls)


def test_stopped_stack_is_left_alone(checkout, docker):
    docker.running = []
    done = run_module({"project_dir": str(checkout)})
    assert done.kind == "exit"
    assert done.result["changed"] is False
    assert "none of relay is running" in done.result["stood_aside"]
    assert actions(docker.calls) == []


def test_no_wait_no_reload(checkout, docker):
    done = run_module({"project_dir": str(checkout), "wait_ready": False, "reload_nginx": False})
    assert done.result["actions"] == ["restart relay"]
    assert done.result["ready"] is None


@pytest.mark.parametrize("args, message", [
    ({"services": ["relay", "nginx && reboot"]}, "not a compose service name"),
    ({"services": []}, "at least one"),
    ({"timeout": 0}, "timeout must be at least"),
])
def test_bad_input_fails_before_any_call(checkout, docker, args, message):
    done = run_module(dict(args, project_dir=str(checkout)))
    assert done.kind == "fail"
    assert message in done.result["msg"]
    assert docker.calls == []


def test_not_a_checkout(tmp_path, docker):
    done = run_module({"project_dir": str(tmp_path / "nowhere")})
    assert done.kind == "fail"
    assert "is not a self-hosted checkout" in done.result["msg"]


def test_lock_held_by_another_restart(checkout, docker, tmp_path):
    held = relay_restart.sc.RestartLock(str(tmp_path / "restart.lock"))
    assert held.acquire()
    try:
        done = run_module({"project_dir": str(checkout), "timeout": 1})
    finally:
        held.release()
    assert done.kind == "fail"
    assert "another restart holds" in done.result["msg"]
    assert docker.calls == []


@pytest.mark.parametrize("fail, check, kept", [
    (None, False, False),          # restarted and ready: the record goes
    ("restart", False, True),      # the engine refused: tried again next run
    ("healthcheck/ready", False, True),
    (None, True, True),            # check mode changes nothing
])
def test_the_pending_restart_record_goes_only_with_a_restart_that_succeeded(checkout, docker, tmp_path, fail, check, kept):
    record = tmp_path / "state" / "relay-restart-pending.json"
    record.parent.mkdir()
    record.write_text("{}\n")
    docker.fail = fail
    done = run_module({"project_dir": str(checkout), "timeout": 1, "clear_record": str(record), "_ansible_check_mode": check})
    assert done.kind == ("fail" if fail else "exit")
    assert record.exists() is kept


def test_a_stack_down_on_purpose_needs_no_pending_restart(checkout, docker, tmp_path):
    record = tmp_path / "relay-restart-pending.json"
    record.write_text("{}\n")
    docker.running = []
    done = run_module({"project_dir": str(checkout), "clear_record": str(record)})
    assert done.kind == "exit" and done.result["stood_aside"] and not record.exists()
