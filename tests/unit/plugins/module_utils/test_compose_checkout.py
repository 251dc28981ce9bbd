# SPDX-License-Identifier: GPL-3.0-or-later
"""compose_checkout without a Compose CLI: what is read from a service's config, the engine, and a folder that is no checkout.

The reader against the real Compose CLI is in tests/integration/test_compose_cli.py.
"""

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.compose_checkout import (
    Checkout,
    CheckoutError,
    limit_key,
    workers,
)
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose, detect_engine


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
