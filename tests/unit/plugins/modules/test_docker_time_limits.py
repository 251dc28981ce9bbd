# SPDX-License-Identifier: GPL-3.0-or-later
"""docker_timeout in the modules that run Docker: a stuck docker CLI fails the task at the limit, naming the command.

The modules run as Ansible runs them (main() with module args), against a fake docker CLI in tmp_path that
sleeps far past the limit on the call it is told to; relay_restart's limits are read at host_program.run_command.
"""

import json
import os
import stat
import time

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program
from ansible_collections.sentry_selfhosted.memory.plugins.modules import compose_override, compose_services, memory_info, relay_restart

from checkouts import minimal_checkout
from fakes import ModuleExit, raise_module_exits

HANG = 10

FAKE_DOCKER = """#!/bin/sh
case " $* " in
  *" %(hang)s "*) exec sleep %(sleep)d ;;
  *" --version "*) echo "Docker version 28.2.2, build e6534b4" ;;
  *" compose version "*) echo "2.40.3" ;;
  *" config --services "*) printf 'relay\\nweb\\n' ;;
  *" config --format json "*) cat "$0.json" ;;
esac
"""


@pytest.fixture(autouse=True)
def module_exits(monkeypatch, tmp_path):
    raise_module_exits(monkeypatch)
    monkeypatch.setattr(relay_restart.sc, "DEFAULT_LOCK_PATH", str(tmp_path / "restart.lock"))


@pytest.fixture
def checkout(tmp_path):
    return str(minimal_checkout(tmp_path / "sentry"))


def fake_docker(tmp_path, hang="never-asked", config='{"services": {"relay": {}, "web": {}}}'):
    """A docker CLI that hangs on the call naming ``hang`` and answers ``config`` to compose config --format json."""
    path = tmp_path / "docker"
    path.write_text(FAKE_DOCKER % {"hang": hang, "sleep": HANG})
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "docker.json").write_text(config)
    return str(path)


def run(module, args):
    started = time.monotonic()
    with patch_module_args(args):
        with pytest.raises(ModuleExit) as caught:
            module.main()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("module", [compose_services, compose_override])
def test_a_stuck_compose_config_fails_the_checkout_readers_at_the_limit(tmp_path, checkout, module):
    done, elapsed = run(module, {"project_dir": checkout, "docker": fake_docker(tmp_path, "config"), "docker_timeout": 1})
    assert done.kind == "fail"
    assert elapsed < HANG / 2
    assert "config --format json` did not end within 1 s" in done.result["msg"]


def test_a_stuck_docker_ps_ends_memory_info_at_the_limit(tmp_path, checkout):
    # Containers asked for: the task fails at the limit.
    args = {"project_dir": checkout, "docker": fake_docker(tmp_path, "ps"), "docker_timeout": 1, "backend": "procfs",
            "containers": True}
    done, elapsed = run(memory_info, args)
    assert done.kind == "fail"
    assert elapsed < HANG / 2
    message = done.result["msg"]
    assert message.startswith("cannot list the containers of compose project sentry-self-hosted: ")
    assert "ps -q --no-trunc --filter label=com.docker.compose.project=sentry-self-hosted` did not end within 1 s" in message
    # Containers optional (the audit on a host short of memory, where dockerd answers slowly): the report, with a note.
    del args["containers"]
    done, elapsed = run(memory_info, args)
    assert done.kind == "exit" and elapsed < HANG / 2, done.result
    assert done.result["containers"] == []
    assert any(n.startswith("containers were not listed: ") and "did not end within 1 s" in n for n in done.result["notes"])


def test_a_stuck_compose_ps_fails_relay_restart_at_the_limit(tmp_path, checkout):
    done, elapsed = run(relay_restart, {"project_dir": checkout, "docker": fake_docker(tmp_path, "ps"), "docker_timeout": 1})
    assert done.kind == "fail"
    assert elapsed < HANG / 2
    assert "ps --status running --services` did not end within 1 s" in done.result["msg"]
    assert done.result["changed"] is False


@pytest.mark.parametrize("module", [compose_services, compose_override, memory_info, relay_restart])
def test_docker_timeout_below_one_second_is_refused_before_docker_runs(tmp_path, checkout, module):
    docker = fake_docker(tmp_path, "compose")
    done, elapsed = run(module, {"project_dir": checkout, "docker": docker, "docker_timeout": 0})
    assert done.kind == "fail"
    assert done.result["msg"] == "docker_timeout must be at least 1 second, got 0"
    assert elapsed < HANG / 2


@pytest.mark.parametrize("module", [compose_services, compose_override])
def test_a_config_answer_that_is_not_an_object_fails_the_task_naming_the_command(tmp_path, checkout, module):
    done, dummy = run(module, {"project_dir": checkout, "docker": fake_docker(tmp_path, config="[]")})
    assert done.kind == "fail"
    assert "`docker compose config --format json` in %s did not answer with a JSON object of services: '[]" % checkout \
        in done.result["msg"]


class Limits:
    """host_program.run_command's stand-in: records each call's limit and answers like a healthy stack."""

    def __init__(self, stuck=None):
        self.stuck = stuck
        self.calls = []

    def __call__(self, argv, timeout=60):
        words = argv[argv.index("--project-directory") + 2:] if "--project-directory" in argv else argv[1:]
        while words and words[0] == "--env-file":
            words = words[2:]
        self.calls.append((words[0], timeout))
        if self.stuck and self.stuck in " ".join(words):
            return host_program.TIMED_OUT, "", "did not end"
        if words[:2] == ["compose", "version"]:
            return 0, "2.40.3\n", ""
        if words[:1] == ["ps"]:
            return 0, "relay\nnginx\nweb\n", ""
        if words[:1] == ["config"]:
            return 0, json.dumps({"services": {"nginx": {}, "relay": {}, "web": {}}}), ""
        return 0, "", ""


@pytest.fixture
def limits(monkeypatch):
    fake = Limits()
    monkeypatch.setattr(host_program, "run_command", fake)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda module, name, required=False, opt_dirs=None: "/usr/bin/docker")
    return fake


@pytest.mark.parametrize("docker_timeout, restart_limit", [(None, 900), (7, 900), (1200, 1200)])
def test_relay_restart_gives_reads_docker_timeout_and_the_restart_longer(checkout, limits, docker_timeout, restart_limit):
    args = {"project_dir": checkout}
    if docker_timeout is not None:
        args["docker_timeout"] = docker_timeout
    done, dummy = run(relay_restart, args)
    assert done.kind == "exit", done.result
    read = docker_timeout or 60
    assert limits.calls == [("compose", read), ("ps", read), ("config", read), ("restart", restart_limit),
                            ("exec", read), ("exec", read)]


def test_relay_restart_stuck_probe_fails_naming_it_and_says_what_was_done(checkout, limits):
    limits.stuck = "healthcheck/ready"
    done, dummy = run(relay_restart, {"project_dir": checkout, "docker_timeout": 5, "timeout": 1})
    assert done.kind == "fail"
    assert "exec -T nginx wget" in done.result["msg"] and "did not end within 5 s" in done.result["msg"]
    assert done.result["actions"] == ["restart relay", "reload nginx"]
    assert done.result["changed"] is True
    assert [c for c in limits.calls if c[0] == "exec"] == [("exec", 5), ("exec", 5)]


@pytest.mark.parametrize("module", [compose_services, compose_override])
def test_a_directory_where_the_override_should_be_fails_the_task_with_a_sentence(tmp_path, checkout, module):
    # Not a time limit, but the same readers: a fault of the file system is a message, not a traceback.
    os.mkdir(os.path.join(checkout, "docker-compose.override.yml"))
    done, dummy = run(module, {"project_dir": checkout, "docker": fake_docker(tmp_path), "docker_timeout": 5})
    assert done.kind == "fail"
    assert "docker-compose.override.yml" in done.result["msg"] and "not a regular file" in done.result["msg"], done.result
    assert os.path.isdir(os.path.join(checkout, "docker-compose.override.yml"))
