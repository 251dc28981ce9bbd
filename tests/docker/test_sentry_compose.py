# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/sentry_compose (the installed copy) against a real engine and the real Compose v2 CLI."""

import os
import subprocess

import pytest

from conftest import SERVICES_ALL, docker

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose

MIB = 1024 ** 2


def run(argv):
    """What programs on a host pass as ``run``: an argv list, no shell, (rc, stdout, stderr)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def compose(stack):
    """SentryCompose on the checkout; the checkout is put back as shipped afterwards."""
    yield sentry_compose.SentryCompose(stack.dir, run)
    stack.write_override(None)
    stack.write_env_custom(None)
    stack.up()


def test_the_installed_copy_is_under_test():
    assert sentry_compose.__file__.startswith(os.environ["SENTRY_MEMORY_COLLECTIONS"])


def test_version_is_compose_v2(compose):
    assert compose.version() >= (2, 0, 0)


def test_services_follow_the_profiles_of_env_and_env_custom(stack, compose):
    assert set(compose.services()) == SERVICES_ALL
    # install.sh's order: .env.custom wins over .env.
    stack.write_env_custom("COMPOSE_PROFILES=errors-only\n")
    assert set(compose.services()) == SERVICES_ALL - {"snuba-replays-consumer"}
    assert compose.config()["name"] == "sentry-self-hosted"


def test_up_no_deps_recreates_only_the_named_services(stack, compose):
    before = stack.ids()
    # nginx depends on relay: without --no-deps, `up nginx` would recreate relay too.
    stack.write_override({"nginx": {"mem_limit": "128m"}, "relay": {"mem_limit": "512m"}})
    compose.up_no_deps(["nginx"])
    after = stack.ids()
    assert after["nginx"] != before["nginx"]
    assert stack.inspect("nginx")["HostConfig"]["Memory"] == 128 * MIB
    for service in set(before) - {"nginx"}:
        assert after[service] == before[service], "%s was recreated" % service
    assert stack.inspect("relay")["HostConfig"]["Memory"] == 0

    compose.up_no_deps(["relay", "web"])
    again = stack.ids()
    assert again["relay"] != after["relay"], "relay's new limit needs a new container"
    assert stack.inspect("relay")["HostConfig"]["Memory"] == 512 * MIB
    assert again["web"] == after["web"], "web did not change and keeps its container"
    assert again["nginx"] == after["nginx"]

    compose.up_no_deps([])
    assert stack.ids() == again


def test_restart_keeps_the_container_and_starts_it_again(stack, compose):
    before = stack.inspect("relay")
    starts = len(stack.log("relay.log"))
    compose.restart(["relay"])
    after = stack.inspect("relay")
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    # The stand-in logs its start before it serves: once ready, the line is there.
    stack.wait_relay_status(200)
    assert len(stack.log("relay.log")) == starts + 1


def test_exec_in_runs_without_a_terminal_and_reports_failures(compose):
    assert "upstream:" in compose.exec_in("relay", "cat", "/work/.relay/config.yml")
    with pytest.raises(sentry_compose.ComposeError) as failure:
        compose.exec_in("relay", "ls", "/no/such/path")
    assert "exec -T relay ls /no/such/path failed" in str(failure.value)
    assert "No such file or directory" in str(failure.value)


def test_a_bad_service_name_is_refused_before_compose_runs(stack, compose):
    calls = []
    guarded = sentry_compose.SentryCompose(stack.dir, lambda argv: calls.append(argv) or (0, "", ""))
    with pytest.raises(sentry_compose.ComposeError, match="not a compose service name"):
        guarded.exec_in("relay;touch /tmp/x", "true")
    with pytest.raises(sentry_compose.ComposeError, match="not a compose service name"):
        guarded.up_no_deps(["web", "--force-recreate"])
    assert calls == []


def test_reload_nginx_is_recorded_by_the_nginx_stand_in(stack, compose):
    relay_ip = next(iter(stack.inspect("relay")["NetworkSettings"]["Networks"].values()))["IPAddress"]
    reloads = [line for line in stack.log("nginx.log") if line.startswith("reload")]
    compose.reload_nginx()
    now = [line for line in stack.log("nginx.log") if line.startswith("reload")]
    assert now == reloads + ["reload relay=%s" % relay_ip]


def test_a_failing_compose_call_raises_with_compose_s_message(compose):
    with pytest.raises(sentry_compose.ComposeError, match="no such service"):
        compose.call("up", "-d", "--no-deps", "no-such-service")


def test_the_project_runs_on_a_user_defined_network(stack):
    """The engine has no default bridge (--bridge=none): compose's own network carries the project."""
    networks = stack.inspect("relay")["NetworkSettings"]["Networks"]
    assert list(networks) == ["sentry-self-hosted_default"]
    assert docker("network", "inspect", "--format", "{{.Driver}}", "sentry-self-hosted_default").stdout.strip() == "bridge"
    stack.wait_relay_status(200)


def test_relay_readiness_follows_the_test_s_flag_through_nginx_s_wget(stack):
    """The probe older releases need (busybox wget in nginx over the compose network) sees the toggle."""
    url = "http://relay:3000/api/relay/healthcheck/ready/"
    wget = ["exec", "-T", "nginx", "wget", "-q", "-O", "/dev/null", "-T", "5", url]
    try:
        stack.set_relay_ready(False)
        assert stack.relay_ready_status() == 503
        failed = stack.compose(*wget, check=False)
        assert failed.returncode == 1 and "503" in failed.stderr
        stack.set_relay_ready(True)
        assert stack.relay_ready_status() == 200
        assert stack.compose(*wget, check=False).returncode == 0
    finally:
        stack.set_relay_ready(True)
