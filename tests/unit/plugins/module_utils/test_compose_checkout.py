# SPDX-License-Identifier: GPL-3.0-or-later
"""compose_checkout without a Compose CLI: what is read from a service's config, the engine, and a folder that is no checkout.

The reader against the real Compose CLI is in tests/integration/test_compose_cli.py.
"""

import json
import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.compose_checkout import (
    Checkout,
    CheckoutError,
    limit_key,
    read_peaks,
    workers,
    write_peaks,
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


PEAKS = {"version": 1, "since": 1765000000, "services": {"web": {"mb": 1200, "at": 1765000000}}}


def test_the_peaks_of_use_are_kept_root_alone_and_read_back(tmp_path):
    path = tmp_path / "state" / "use-peaks.json"
    assert read_peaks(str(path)) is None
    assert write_peaks(str(path), PEAKS) is True
    assert read_peaks(str(path)) == PEAKS
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o755"
    mtime = path.stat().st_mtime_ns
    os.chmod(str(path), 0o644)
    # The same history: not rewritten, only made root's alone to read again.
    assert write_peaks(str(path), PEAKS) is False
    assert path.stat().st_mtime_ns == mtime and oct(path.stat().st_mode & 0o777) == "0o600"
    grown = dict(PEAKS, services={"web": {"mb": 1300, "at": 1765086400}})
    assert write_peaks(str(path), grown) is True and read_peaks(str(path)) == grown


@pytest.mark.parametrize("forge, message", [
    ("symlink", "is a symlink"),
    ("group-writable", "is writable by others (mode 0664)"),
    ("directory", "is not a regular file"),
    ("not-json", "cannot be read as JSON"),
])
def test_a_history_of_peaks_that_cannot_be_trusted_or_read_is_refused_naming_the_variable(tmp_path, forge, message):
    path = tmp_path / "use-peaks.json"
    if forge == "symlink":
        (tmp_path / "elsewhere.json").write_text(json.dumps(PEAKS))
        path.symlink_to(tmp_path / "elsewhere.json")
    elif forge == "directory":
        path.mkdir()
    else:
        path.write_text(json.dumps(PEAKS) if forge == "group-writable" else "{not json")
        os.chmod(str(path), 0o664 if forge == "group-writable" else 0o600)
    with pytest.raises(CheckoutError, match=r"use-peaks.json \(sentry_selfhosted_peaks_file\) .*%s" % message.replace("(", r"\(").replace(")", r"\)")):
        read_peaks(str(path))
