# SPDX-License-Identifier: GPL-3.0-or-later
"""The restart program the restart_timer role installs: decisions, rate limit, stand-aside, and a whole run.

Whole runs call the recording docker CLI stand-in (tests/stand-ins/docker_cli.py,
through fakes.docker_cli) on the project's 24.8-shaped checkout (checkouts.FIXTURE_24):
there is no Docker engine here, and that CLI is the boundary the program talks to.
"""

import importlib
import json
import os
import shutil
import sys

import pytest

import checkouts
import fakes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
# As on the host: the program beside copies of the collection's module_utils.
sys.path.insert(0, os.path.join(REPO, "plugins", "module_utils"))
sys.path.insert(0, os.path.join(REPO, "roles", "restart_timer", "files"))
program = importlib.import_module("sentry_relay_restart")

GIB = 1024 ** 3
# `docker compose config --format json` of the fixture checkout, trimmed to what is read.
CONFIG_24 = {"services": {"nginx": {"depends_on": {"relay": {"condition": "service_started", "required": True}}},
                          "relay": {}, "web": {}}}


def view(used_percent, threshold=0.85):
    total = 16 * GIB
    used = int(total * used_percent / 100.0)
    return {"used": used, "total": total, "used_percent": used_percent, "threshold": threshold,
            "threshold_bytes": int(total * threshold), "would_reject": used_percent / 100.0 >= threshold,
            "release": "24.8.0", "source": "cgroup"}


@pytest.mark.parametrize("modes, memory, ready, relay, restart, status", [
    (["always"], None, None, None, True, 0),
    (["memory"], view(50), None, None, False, 0),
    (["memory"], view(90), None, None, True, 0),
    (["unhealthy"], None, True, None, False, 0),
    (["unhealthy"], None, False, view(97, 0.95), True, 0),
    # Not ready with memory fine: web or kafka is the cause; no restart, the unit fails.
    (["unhealthy"], None, False, view(40, 0.95), False, 3),
    (["memory", "unhealthy"], view(50), True, None, False, 0),
    (["memory", "unhealthy"], view(90), True, None, True, 0),
    (["always", "memory"], view(10), None, None, True, 0),
])
def test_decide(modes, memory, ready, relay, restart, status):
    got_restart, got_status, reason = program.decide(modes, memory, ready, relay)
    assert (got_restart, got_status) == (restart, status)
    if memory is not None and "always" not in modes:
        # Every decision carries its figures.
        assert str(memory["used"]) in reason


@pytest.mark.parametrize("change, message", [
    ({"modes": ["sometimes"]}, "modes must be"),
    ({"modes": []}, "modes must be"),
    ({"memory_threshold": 1.5}, "memory_threshold"),
    ({"services": ["relay", "$(reboot)"]}, "not a compose service name"),
])
def test_load_config_refuses_bad_values(tmp_path, change, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(change))
    with pytest.raises(program.ConfigError, match=message):
        program.load_config(str(path))


def test_load_config_takes_strings_from_older_ansible(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ready_timeout": "60", "memory_threshold": "0.8", "reload_nginx": "False",
                                "relay_threshold": "None"}))
    config = program.load_config(str(path))
    assert (config["ready_timeout"], config["memory_threshold"], config["reload_nginx"]) == (60, 0.8, False)
    assert config["relay_threshold"] is None


# --- whole runs against the stand-in -----------------------------------------

def host_tree(root, relay_anon, limit=None, mode="v2", pid=4242):
    """A /proc and /sys/fs/cgroup of a 16 GiB host with the relay container at ``pid``."""
    os.makedirs(os.path.join(root, "proc", str(pid)))
    with open(os.path.join(root, "proc", "meminfo"), "w") as handle:
        handle.write("MemTotal: %d kB\nMemFree: %d kB\nMemAvailable: %d kB\n" % (16 * 1024 ** 2, 1024 ** 2, 8 * 1024 ** 2))
    os.makedirs(os.path.join(root, "proc", "self"))
    if mode == "v2":
        mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
        cgroup, directory = "0::/system.slice/docker-relay.scope\n", "sys/fs/cgroup/system.slice/docker-relay.scope"
        files = {"memory.stat": "anon %d\ninactive_file 0\n" % relay_anon, "memory.current": str(relay_anon),
                 "memory.max": str(limit) if limit else "max"}
    else:
        mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        cgroup, directory = "5:memory:/docker/relay\n", "sys/fs/cgroup/memory/docker/relay"
        files = {"memory.stat": "total_rss %d\ntotal_inactive_file 0\n" % relay_anon,
                 "memory.usage_in_bytes": str(relay_anon), "memory.limit_in_bytes": str(limit or 0x7FFFFFFFFFFFF000)}
    with open(os.path.join(root, "proc", "self", "mounts"), "w") as handle:
        handle.write(mounts)
    with open(os.path.join(root, "proc", str(pid), "cgroup"), "w") as handle:
        handle.write(cgroup)
    os.makedirs(os.path.join(root, directory))
    for name, text in files.items():
        with open(os.path.join(root, directory, name), "w") as handle:
            handle.write(text + "\n")


@pytest.fixture(autouse=True)
def under_systemd(monkeypatch):
    """The program runs as a unit, whose stdout is the journal: lines carry "<N>" priorities."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")


@pytest.fixture
def host(tmp_path, monkeypatch):
    checkout = tmp_path / "sentry"
    shutil.copytree(checkouts.FIXTURE_24, str(checkout))
    standin = tmp_path / "standin"
    standin.mkdir()
    (standin / "config.json").write_text(json.dumps(CONFIG_24))
    (standin / "running").write_text("web\nrelay\nnginx\n")
    (standin / "containers.json").write_text(json.dumps([{
        "Id": "relay1", "Name": "/sentry-self-hosted-relay-1", "State": {"Pid": 4242},
        "Config": {"Labels": {"com.docker.compose.service": "relay"}}, "HostConfig": {"Memory": 0}}]))
    docker = fakes.docker_cli(tmp_path)
    monkeypatch.setenv("DOCKER_STANDIN_DIR", str(standin))
    root = tmp_path / "root"
    root.mkdir()

    class Host:
        dir = tmp_path

        def run(self, **settings):
            config = dict({"project_dir": str(checkout), "docker": str(docker), "ready_timeout": 5,
                           "state_file": str(tmp_path / "state" / "restarts.json"),
                           "lock_path": str(tmp_path / "restart.lock")}, **settings)
            (tmp_path / "config.json").write_text(json.dumps(config))
            return program.main(["--config", str(tmp_path / "config.json")], root=str(root))

        def calls(self):
            path = standin / "calls.jsonl"
            if not path.exists():
                return []
            return [json.loads(line)["command"] for line in path.read_text().splitlines()]

    host_obj = Host()
    host_obj.root = str(root)
    host_obj.standin = standin
    return host_obj


def compose_actions(calls):
    return [c for c in calls if c.startswith(("compose restart", "compose exec"))]


def test_always_restarts_reloads_nginx_then_probes(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    assert host.run(modes=["always"]) == 0
    assert compose_actions(host.calls()) == [
        "compose restart relay",
        "compose exec -T nginx nginx -s reload",
        "compose exec -T nginx wget -q -O /dev/null -T 5 http://relay:3000/api/relay/healthcheck/ready/",
    ]
    out = capsys.readouterr().out
    assert "<5>restarting: mode always" in out
    assert "<5>done: restart relay, reload nginx, wait for relay ready" in out


def test_failed_restart_fails_the_run(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    (host.standin / "fail").write_text("restart")
    assert host.run(modes=["always"]) == 1
    assert "<3>restart failed" in capsys.readouterr().out
    assert not any(c.startswith("compose exec") for c in host.calls())


def test_relay_not_ready_by_the_timeout_fails_the_run(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    (host.standin / "fail").write_text("healthcheck/ready")
    assert host.run(modes=["always"], ready_timeout=1) == 1
    assert "<3>Relay is not ready 1 s after" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_memory_mode_low_usage_restarts_nothing(host, capsys, mode):
    host_tree(host.root, relay_anon=GIB, limit=4 * GIB, mode=mode)
    assert host.run(modes=["memory"], memory_threshold=0.85) == 0
    assert compose_actions(host.calls()) == []
    out = capsys.readouterr().out
    # Relay's own figure: its container's anon memory against its limit (1 of 4 GiB).
    assert "no restart needed: memory under: used %d of %d bytes (25.00%%)" % (GIB, 4 * GIB) in out


def test_memory_mode_high_usage_restarts(host, capsys):
    host_tree(host.root, relay_anon=int(3.6 * GIB), limit=4 * GIB)
    assert host.run(modes=["memory"], memory_threshold=0.85) == 0
    assert compose_actions(host.calls())[0] == "compose restart relay"
    assert "(90.00%)" in capsys.readouterr().out


def test_unhealthy_mode_leaves_a_ready_relay_alone(host):
    host_tree(host.root, relay_anon=GIB)
    assert host.run(modes=["unhealthy"]) == 0
    assert [c for c in host.calls() if c.startswith("compose restart")] == []
    assert any("healthcheck/ready" in c for c in host.calls())


def test_unhealthy_mode_does_not_restart_for_other_causes(host, capsys):
    host_tree(host.root, relay_anon=GIB, limit=4 * GIB)
    (host.standin / "fail").write_text("healthcheck/ready")
    assert host.run(modes=["unhealthy"]) == 3
    assert [c for c in host.calls() if c.startswith("compose restart")] == []
    assert "<3>unhealthy: Relay is not ready but its memory probe passes" in capsys.readouterr().out


def test_rate_limit_stops_restarts_and_fails(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    for _attempt in range(2):
        assert host.run(modes=["always"], max_restarts=2) == 0
    before = len(host.calls())
    assert host.run(modes=["always"], max_restarts=2) == 4
    assert not any(c.startswith("compose restart") for c in host.calls()[before:])
    assert "<3>restart rate limit reached: 2 restarts" in capsys.readouterr().out


def test_stands_aside_when_the_stack_is_down(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    (host.standin / "running").write_text("")
    assert host.run(modes=["always"]) == 0
    assert compose_actions(host.calls()) == []
    assert "<5>standing aside: none of relay is running" in capsys.readouterr().out


def test_stands_aside_while_another_restart_runs(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    held = program.sc.RestartLock(str(host.dir / "restart.lock"))
    assert held.acquire()
    try:
        assert host.run(modes=["always"]) == 0
    finally:
        held.release()
    assert host.calls() == []
    assert "another restart holds" in capsys.readouterr().out


def test_full_stack_restarts_every_running_service(host):
    host_tree(host.root, relay_anon=GIB)
    assert host.run(modes=["always"], full_stack=True) == 0
    # nginx restarts with the rest: no reload needed.
    assert compose_actions(host.calls())[:1] == ["compose restart web relay nginx"]
    assert not any("nginx -s reload" in c for c in host.calls())


def test_missing_docker_cli_fails_with_a_clear_line(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    assert host.run(modes=["always"], docker=str(host.dir / "no-such-docker")) == 1
    out = capsys.readouterr().out
    assert "<3>restart failed:" in out
    assert "cannot run" in out and "no-such-docker" in out


# --- Relay's own threshold (relay/config.yml) decides the unhealthy mode ------

def test_unhealthy_mode_reads_relays_threshold_from_the_checkout(host, capsys):
    # relay_health wrote max_memory_percent 0.90; Relay sits at 92% of its limit and rejects events.
    host_tree(host.root, relay_anon=int(0.92 * 4 * GIB), limit=4 * GIB)
    (host.dir / "sentry" / "relay" / "config.yml").write_text(
        "relay:\n  mode: managed\nhealth:\n  max_memory_percent: 0.90  # set by relay_health\n")
    (host.standin / "fail").write_text("healthcheck/ready")
    # Restarted; the stand-in keeps answering "not ready", so the run ends failed.
    assert host.run(modes=["unhealthy"], ready_timeout=1) == 1
    assert [c for c in host.calls() if c.startswith("compose restart")] == ["compose restart relay"]
    assert "unhealthy: Relay is not ready and its memory probe fails, over: used" in capsys.readouterr().out


def test_unhealthy_mode_threshold_in_the_configuration_still_wins(host, capsys):
    host_tree(host.root, relay_anon=int(0.92 * 4 * GIB), limit=4 * GIB)
    (host.dir / "sentry" / "relay" / "config.yml").write_text("health:\n  max_memory_percent: 0.90\n")
    (host.standin / "fail").write_text("healthcheck/ready")
    assert host.run(modes=["unhealthy"], relay_threshold=0.95) == 3
    assert [c for c in host.calls() if c.startswith("compose restart")] == []


# --- hardening: any bytes in the operator's files, wrong shapes, unsafe paths --

def test_latin1_bytes_in_env_files_and_relay_config_do_not_stop_the_program(host, capsys):
    host_tree(host.root, relay_anon=int(3.6 * GIB), limit=4 * GIB)
    checkout = host.dir / "sentry"
    env = (checkout / ".env").read_bytes()
    (checkout / ".env").write_bytes(env + b"# caf\xe9 au lait\n")
    (checkout / ".env.custom").write_bytes(b"SENTRY_MAIL_HOST=m\xfcnchen.example\n")
    (checkout / "relay" / "config.yml").write_bytes(b"# Relay f\xfcr Sentry\nhealth:\n  max_memory_percent: 0.95\n")
    assert host.run(modes=["memory"], memory_threshold=0.85) == 0
    out = capsys.readouterr().out
    assert compose_actions(host.calls())[0] == "compose restart relay"
    assert "%s line %d is not UTF-8" % (checkout / ".env", len(env.splitlines()) + 1) in out
    assert "%s line 1 is not UTF-8" % (checkout / ".env.custom") in out
    assert "Traceback" not in out


@pytest.mark.parametrize("config_text, message", [
    (json.dumps({"services": "relay"}), "services must be a list of strings, got 'relay'"),
    (json.dumps(["relay"]), "it must hold a JSON object, got list"),
    (json.dumps({"ready_timeout": None}), "ready_timeout must be a number, got None"),
    (json.dumps({"modes": "always"}), "modes must be a list of strings"),
    (b'{"project_dir": "/opt/sentr\xff"}', "cannot read it"),
])
def test_configuration_of_the_wrong_shape_is_refused_in_one_line(tmp_path, capsys, config_text, message):
    path = tmp_path / "config.json"
    if isinstance(config_text, bytes):
        path.write_bytes(config_text)
    else:
        path.write_text(config_text)
    assert program.main(["--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("<3>cannot use %s: " % path) and message in out


@pytest.mark.parametrize("record", ['{"not": "a list"}', "[1, 2, \"x\"]", "\x00garbage", "[true]"])
def test_damaged_restart_record_keeps_the_rate_limit(host, capsys, record):
    host_tree(host.root, relay_anon=GIB)
    state = host.dir / "state"
    state.mkdir(mode=0o700)
    (state / "restarts.json").write_text(record)
    assert host.run(modes=["always"], max_restarts=2) == 4
    assert [c for c in host.calls() if c.startswith("compose restart")] == []
    out = capsys.readouterr().out
    assert "<3>the restart record %s is damaged" % (state / "restarts.json") in out
    # Rewritten as a full window: the next tick is limited too, and the limit lifts when the window ends.
    assert len(json.loads((state / "restarts.json").read_text())) == 2
    assert host.run(modes=["always"], max_restarts=2) == 4
    assert "restart rate limit reached: 2 restarts" in capsys.readouterr().out


@pytest.mark.parametrize("mode", [0o620, 0o602], ids=["group-writable", "other-writable"])
def test_a_restart_record_others_may_write_keeps_the_rate_limit(host, capsys, mode):
    host_tree(host.root, relay_anon=GIB)
    state = host.dir / "state"
    state.mkdir(mode=0o700)
    record = state / "restarts.json"
    # Root's file, but one the group or others may write: its "no restarts yet" would lift the rate limit.
    record.write_text("[]")
    record.chmod(mode)
    assert host.run(modes=["always"], max_restarts=2) == 4
    assert [c for c in host.calls() if c.startswith("compose restart")] == []
    out = capsys.readouterr().out
    assert "<3>the restart record %s is damaged (%s is writable by others (mode %04o)" % (record, record, mode) in out
    # Rewritten as root's alone, a full window.
    assert os.stat(str(record)).st_mode & 0o777 == 0o600
    assert len(json.loads(record.read_text())) == 2


def test_docker_answering_no_json_is_a_logged_note_not_a_traceback(host, capsys):
    host_tree(host.root, relay_anon=GIB, limit=4 * GIB)
    docker = host.dir / "docker-garbage"
    docker.write_text("#!/bin/sh\n[ \"$1\" = inspect ] && { echo 'Error: not json'; exit 0; }\nexec %s \"$@\"\n"
                      % (host.dir / "docker"))
    docker.chmod(0o755)
    assert host.run(modes=["memory"], docker=str(docker)) == 0
    out = capsys.readouterr().out
    assert "containers were not listed: docker inspect did not answer with a JSON list" in out
    assert "Traceback" not in out


def test_lock_in_a_world_writable_directory_is_refused_clearly(host, capsys):
    host_tree(host.root, relay_anon=GIB)
    shared = host.dir / "lock"
    shared.mkdir()
    shared.chmod(0o1777)  # as /run/lock, where any user can create the file first
    assert host.run(modes=["always"], lock_path=str(shared / "restart.lock")) == 1
    out = capsys.readouterr().out
    assert "<3>not restarting: %s belongs to uid" % shared in out
    assert compose_actions(host.calls()) == []
