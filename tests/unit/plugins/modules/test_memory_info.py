# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_info: the gathering class on fixture trees, and main() as Ansible runs it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.swapfile import container_reason
from ansible_collections.sentry_selfhosted.memory.plugins.modules import memory_info

HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
TREE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".cache", "pytest-collections")
MODULE = memory_info.__file__

RELAY_INSPECT = [{
    "Id": "bbbb", "Name": "/sentry-self-hosted-relay-1", "State": {"Pid": 4242},
    "Config": {"Labels": {"com.docker.compose.service": "relay"}},
    "HostConfig": {"Memory": 2147483648},
}]


class Failed(Exception):
    pass


class FakeModule:
    """Just what MemoryInfo uses of AnsibleModule; run_command answers for the docker CLI (passed as MemoryInfo's run)."""

    def __init__(self, docker=True, ps="bbbb\n", inspect=None, **params):
        self.params = dict(relay_threshold=None, relay_max_memory_bytes=None, project_dir="/nonexistent",
                           containers=None, compose_project=None, backend="procfs", top_processes=3,
                           docker="docker", docker_timeout=60)
        self.params.update(params)
        self.docker = docker
        self.ps = ps
        self.inspect = RELAY_INSPECT if inspect is None else inspect
        self.commands = []

    def get_bin_path(self, name, required=False):
        if not self.docker:
            return None
        return name if name.startswith("/") else "/usr/bin/" + name

    def run_command(self, argv, timeout=None):
        self.commands.append(argv)
        if argv[1] == "ps":
            return 0, self.ps, ""
        return 0, json.dumps(self.inspect), ""

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)


def gather(root, **kwargs):
    module = FakeModule(**kwargs)
    return memory_info.MemoryInfo(module, root=os.path.join(HOSTS, root), run=module.run_command).gather()


def checkout(tmp_path, release="24.8.0", threshold=None):
    (tmp_path / ".env").write_text("RELAY_IMAGE=getsentry/relay:%s\n" % release)
    (tmp_path / "relay").mkdir()
    if threshold is not None:
        (tmp_path / "relay" / "config.yml").write_text("# ops\nrelay:\n  mode: managed\nhealth:\n  max_memory_percent: %s\n" % threshold)
    return str(tmp_path)


def test_full_report_on_a_limited_relay(tmp_path):
    result = gather("v2-relay-limited", project_dir=checkout(tmp_path, "24.8.0", 0.9))
    assert result["backend"] == "procfs"
    assert result["cgroup_mode"] == "v2"
    assert result["relay"]["measures"] == "cgroup"
    assert result["relay"]["release"] == "24.8.0"
    assert result["relay"]["threshold"] == 0.9
    assert result["relay"]["threshold_source"].endswith("relay/config.yml")
    assert result["containers"][0]["service"] == "relay"
    assert result["containers"][0]["limit"] == 2147483648
    assert result["swap"]["total"] == 8 * 1024 ** 3 and len(result["swap"]["areas"]) == 1
    assert result["sysctl"]["vm.swappiness"] == 5
    assert result["psi_available"] is True and result["oom_kills"] == 0


def test_original_outage_would_reject(tmp_path):
    unlimited = [dict(RELAY_INSPECT[0], HostConfig={"Memory": 0})]
    result = gather("v2-relay-unlimited", project_dir=checkout(tmp_path), inspect=unlimited)
    assert result["relay"]["would_reject"] is True
    assert result["relay"]["used_percent"] == 98.16
    assert result["relay"]["threshold_source"] == "Relay's default"


def test_option_threshold_wins_over_config(tmp_path):
    result = gather("v2-relay-limited", project_dir=checkout(tmp_path, threshold=0.9), relay_threshold=0.5)
    assert result["relay"]["threshold"] == 0.5 and result["relay"]["threshold_source"] == "option"
    assert result["relay"]["would_reject"] is True


def test_missing_checkout_says_so_and_how_to_set_it():
    result = gather("v2-relay-limited", docker=False, project_dir="/nonexistent/sentry")
    note = next(n for n in result["notes"] if "/nonexistent/sentry" in n)
    assert "does not exist" in note and "sentry_selfhosted_dir" in note
    # The missing directory is the cause; the release note alone would send the operator to .env.
    assert not any("no RELAY_IMAGE tag" in n for n in result["notes"])


def test_checkout_without_relay_image_keeps_the_release_note(tmp_path):
    (tmp_path / ".env").write_text("SENTRY_IMAGE=getsentry/sentry:nightly\n")
    result = gather("v2-relay-limited", docker=False, project_dir=str(tmp_path))
    assert any("no RELAY_IMAGE tag in %s/.env" % tmp_path in n for n in result["notes"])
    assert not any("does not exist" in n for n in result["notes"])


def test_top_processes_leave_out_the_module_itself():
    """On this machine, the test's own process stands for the module's: it and its parent are not listed."""
    result = memory_info.MemoryInfo(FakeModule(docker=False, top_processes=100000)).gather()
    pids = [p["pid"] for p in result["top_processes"]]
    assert pids, "this machine has processes"
    assert os.getpid() not in pids and os.getppid() not in pids


def test_no_docker_cli_gives_empty_list_and_a_note():
    result = gather("v1-no-psi-two-swaps", docker=False)
    assert result["containers"] == []
    assert any("no docker CLI" in note for note in result["notes"])
    assert any("pressure stall" in note for note in result["notes"])
    assert result["psi_available"] is False and result["oom_kills"] is None


def test_project_with_no_container_is_a_note_by_default_and_an_error_when_asked():
    result = gather("v2-relay-limited", ps="")
    assert result["containers"] == []
    assert any("no running container belongs to compose project 'sentry-self-hosted'" in n for n in result["notes"])
    with pytest.raises(Failed, match="check compose_project"):
        gather("v2-relay-limited", ps="", containers=True, compose_project="sentry-self-hosted")


def test_docker_daemon_down_with_containers_requested_fails_clearly():
    module = FakeModule(containers=True)
    module.run_command = lambda argv, timeout=None: (1, "", "Cannot connect to the Docker daemon")
    with pytest.raises(Failed, match="cannot list the containers.*Cannot connect"):
        memory_info.MemoryInfo(module, root=os.path.join(HOSTS, "v2-relay-limited"), run=module.run_command).gather()


def test_threshold_in_config_outside_range_fails(tmp_path):
    with pytest.raises(Failed, match=r"outside \(0, 1\]"):
        gather("v2-relay-limited", project_dir=checkout(tmp_path, threshold=1.5))


def run_module(args):
    """Run the module file as Ansible does after transfer: python MODULE ARGS.json."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(TREE))
    proc = subprocess.run([sys.executable, MODULE, json.dumps({"ANSIBLE_MODULE_ARGS": args})],
                          capture_output=True, text=True, env=env, check=False)
    return json.loads(proc.stdout), proc


@pytest.mark.parametrize("args, message", [
    ({"relay_threshold": 0}, "relay_threshold must be in (0, 1]"),
    ({"relay_threshold": 1.2}, "relay_threshold must be in (0, 1]"),
    ({"bogus": 1}, "Unsupported parameters"),
    ({"top_processes": -1}, "top_processes must not be negative"),
    ({"backend": "magic"}, "value of backend must be one of"),
])
def test_bad_input_is_a_clear_message_not_a_traceback(args, message):
    result, proc = run_module(dict(args, containers=False))
    assert result["failed"] is True
    assert message in result["msg"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_main_reports_this_machine():
    result, proc = run_module({"containers": False, "backend": "procfs"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["changed"] is False
    assert result["ram"]["total"] > 0 and result["relay"]["total"] == result["ram"]["total"]


def test_containers_are_listed_with_the_docker_cli_it_is_given(tmp_path):
    module = FakeModule(project_dir=checkout(tmp_path))
    module.params["docker"] = "/opt/docker-ce/bin/docker"
    memory_info.MemoryInfo(module, root=os.path.join(HOSTS, "v2-relay-limited"), run=module.run_command).gather()
    assert module.commands and {argv[0] for argv in module.commands} == {"/opt/docker-ce/bin/docker"}


@pytest.mark.parametrize("env_line, given, project", [
    ("COMPOSE_PROJECT_NAME=acme-sentry\n", None, "acme-sentry"),
    ("", None, "sentry-self-hosted"),
    ("COMPOSE_PROJECT_NAME=acme-sentry\n", "other", "other"),
])
def test_the_compose_project_comes_from_the_checkout_as_in_the_relay_view(tmp_path, env_line, given, project):
    path = checkout(tmp_path)
    with open(os.path.join(path, ".env"), "a") as handle:
        handle.write(env_line)
    module = FakeModule(project_dir=path, compose_project=given)
    result = memory_info.MemoryInfo(module, root=os.path.join(HOSTS, "v2-relay-limited"), run=module.run_command).gather()
    assert module.commands[0][-1] == "label=com.docker.compose.project=%s" % project
    assert result["relay"]["measures"] == "cgroup"


def test_a_container_is_named_with_the_swap_roles_own_check(tmp_path):
    assert gather("v2-relay-limited", docker=False)["container"] is None
    root = tmp_path / "host"
    shutil.copytree(os.path.join(HOSTS, "v2-relay-limited"), str(root))
    (root / "run").mkdir()
    (root / "run" / ".containerenv").write_text("")
    module = FakeModule(docker=False)
    result = memory_info.MemoryInfo(module, root=str(root), run=module.run_command).gather()
    assert result["container"] == container_reason(str(root)) == "/run/.containerenv exists"
