# SPDX-License-Identifier: GPL-3.0-or-later
"""sentry_checkout without a Compose CLI: its .env files, its containers, what is read from a service's config, the
engine, and a folder that is no checkout.

The reader against the real Compose CLI is in tests/integration/test_compose_cli.py.
"""

import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import (
    Checkout,
    CheckoutError,
    limit_key,
    workers,
)
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose, detect_engine

HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
GIB = 1024 ** 3


def test_env_files_custom_wins(tmp_path):
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=sentry-self-hosted\nRELAY_IMAGE=getsentry/relay:24.8.0\n# c\n")
    (tmp_path / ".env.custom").write_text("RELAY_IMAGE='getsentry/relay:25.10.0'\n")
    env = ck.checkout_env(str(tmp_path))
    assert env["COMPOSE_PROJECT_NAME"] == "sentry-self-hosted"
    assert ck.relay_release(env) == (25, 10, 0)
    assert ck.checkout_env(str(tmp_path / "missing")) == {}


def test_compose_containers_and_their_cgroups():
    root = os.path.join(HOSTS, "v2-relay-limited")
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[1] == "ps":
            return 0, "bbbb\n", ""
        return 0, ('[{"Id": "bbbb", "Name": "/sentry-self-hosted-relay-1", "State": {"Pid": 4242},'
                   ' "Config": {"Labels": {"com.docker.compose.service": "relay"}},'
                   ' "HostConfig": {"Memory": 2147483648, "CgroupnsMode": "private"}}]'), ""

    found = ck.container_memory(ck.list_compose_containers(run, "sentry-self-hosted"), "v2", root)
    assert calls[0] == ["docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=sentry-self-hosted"]
    assert found[0]["service"] == "relay" and found[0]["name"] == "sentry-self-hosted-relay-1"
    assert found[0]["limit"] == found[0]["configured_limit"] == 2 * GIB
    assert found[0]["anon"] == 1468006400


def test_container_whose_cgroup_vanished_is_reported_not_raised():
    containers = [{"id": "x", "pid": 999999, "service": "web"}]
    ck.container_memory(containers, "v2", os.path.join(HOSTS, "v2-relay-limited"))
    assert "error" in containers[0] and "usage" not in containers[0]


def test_docker_failure_is_a_clear_error():
    with pytest.raises(hm.MemoryReadError, match="docker ps failed: Cannot connect"):
        ck.list_compose_containers(lambda argv: (1, "", "Cannot connect to the Docker daemon"), "p")


def test_not_a_checkout_is_refused(tmp_path):
    calls = []
    checkout = Checkout(SentryCompose(str(tmp_path), lambda argv: calls.append(argv) or (0, "v2.40.3", "")))
    with pytest.raises(CheckoutError, match="not a self-hosted Sentry checkout"):
        checkout.read()
    assert calls == []


@pytest.mark.parametrize("service, key", [
    ({"mem_limit": 1 << 30}, "mem_limit"),
    ({"deploy": {"resources": {"limits": {"memory": 1 << 30}}}}, "deploy"),
    ({"mem_limit": 1 << 30, "deploy": {"resources": {"limits": {"memory": 1 << 30}}}}, "mem_limit"),
    ({}, "mem_limit"),
])
def test_limit_key_follows_what_the_service_uses(service, key):
    assert limit_key(service) == key


@pytest.mark.parametrize("service, expected", [
    ({"command": "run taskworker --concurrency=8 --rpc-host=taskbroker:50051"}, 8),
    ({"command": ["run", "taskworker", "--concurrency", "2"]}, 2),
    ({"command": "worker --verbose", "environment": {"LAUNCHPAD_WORKER_CONCURRENCY": "6"}}, 6),
    ({"command": "run taskworker --concurrency=$X"}, None),
    ({"command": ["run", "web"]}, None),
    ({}, None),
])
def test_workers_come_from_concurrency_flags_or_variables(service, expected):
    assert workers(service) == expected


@pytest.mark.parametrize("version, path, host, kind, rootless", [
    ("Docker version 28.2.2, build e6534b4", "/usr/bin/docker", "", "docker", False),
    ("podman version 4.3.1", "/usr/bin/docker", "", "podman-docker", False),
    ("Docker version 28.1.1, build 4eba377", "/snap/bin/docker", "", "snap-docker", False),
    ("Docker version 28.2.2, build e6534b4", "/usr/bin/docker", "unix:///run/user/1000/docker.sock", "docker", True),
])
def test_detect_engine(tmp_path, version, path, host, kind, rootless):
    (tmp_path / "var" / "run").mkdir(parents=True)
    (tmp_path / "var" / "run" / "docker.sock").write_text("")
    engine = detect_engine(path, lambda argv: (0, version + "\n", ""), environ={"DOCKER_HOST": host}, root=str(tmp_path))
    assert (engine["kind"], engine["rootless"]) == (kind, rootless)
    assert engine["supported"] == (kind == "docker" and not rootless)
    assert bool(engine["note"]) != engine["supported"]


def test_rootless_seen_from_a_user_socket_without_a_system_one(tmp_path):
    (tmp_path / "run" / "user" / "1000").mkdir(parents=True)
    (tmp_path / "run" / "user" / "1000" / "docker.sock").write_text("")
    engine = detect_engine("/usr/bin/docker", lambda argv: (0, "Docker version 28.2.2", ""), environ={}, root=str(tmp_path))
    assert engine["rootless"] and not engine["supported"]
