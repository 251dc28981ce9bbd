# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a checkout with the real Compose v2 CLI: the compose_services module through Ansible, on the project's
fixture and on every upstream release beside the checkout, and what sentry_compose decides from compose's answer."""

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose as sc

import checkouts

pytestmark = pytest.mark.usefixtures("compose_cli")
RELEASES = checkouts.upstream_releases()
upstream = pytest.mark.skipif(not RELEASES, reason="../shared/upstream is not beside this checkout")


def tree(path):
    """Every file below path with its bytes and mode, to prove a read changed nothing."""
    found = {}
    for folder, dummy, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = (handle.read(), os.stat(full).st_mode)
    return found


@pytest.fixture
def checkout(tmp_path):
    target = tmp_path / "sentry"
    shutil.copytree(checkouts.FIXTURE, target)
    return target


@pytest.mark.parametrize("check_mode", [False, True])
def test_compose_services_reads_the_fixture_and_writes_nothing(run_module, checkout, check_mode):
    before = tree(checkout)
    result = run_module("sentry_selfhosted.memory.compose_services", {"project_dir": str(checkout)},
                        *(["--check"] if check_mode else []))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert sorted(result["services"]) == sorted(checkouts.active_services(str(checkout)))
    assert [p["name"] for p in result["service_profiles"]] == result["services"]
    assert set(result["limit_keys"]) == set(result["services"])
    assert result["override"] == str(checkout / "docker-compose.override.yml")
    assert result["stale_services"] == [] and result["managed_services"] == []
    assert tree(checkout) == before


def test_compose_services_names_the_operators_entry_for_a_service_the_checkout_lacks(run_module, checkout):
    override = checkout / "docker-compose.override.yml"
    override.write_text("services:\n  web:\n    environment:\n      A: '1'\n  worker:\n    mem_limit: 1g\n")
    before = tree(checkout)
    result = run_module("sentry_selfhosted.memory.compose_services", {"project_dir": str(checkout)})
    assert result["failed"]
    assert "worker (line 5)" in result["msg"] and "nothing was changed" in result["msg"]
    assert result["operator_stale_services"] == ["worker"]
    assert tree(checkout) == before


@upstream
@pytest.mark.parametrize("release", RELEASES)
def test_compose_services_on_every_upstream_release(run_module, release):
    result = run_module("sentry_selfhosted.memory.compose_services", {"project_dir": checkouts.upstream(release)})
    assert not result.get("failed"), result.get("msg")
    want = checkouts.active_services(checkouts.upstream(release))
    assert sorted(result["services"]) == sorted(want)
    assert len(want) >= 26
    written = dict((s["name"], s) for s in checkouts.service_profiles(checkouts.upstream(release)))
    for service in result["service_profiles"]:
        assert service["profiles"] == written[service["name"]]["profiles"], service["name"]
        # The tests' reading of the file with its .env gives the workers the real Compose and the module give.
        assert service["workers"] == written[service["name"]]["workers"], service["name"]
        if service["name"] in ("taskworker", "launchpad-taskworker"):
            assert service["workers"] and service["workers"] > 0


@upstream
@pytest.mark.parametrize("release, follows", [("24.8.0", False), ("26.8.0", True)])
def test_nginx_follows_relay_on_upstream_checkouts(release, follows):
    out = subprocess.check_output(["docker", "compose", "--project-directory", checkouts.upstream(release),
                                   "config", "--format", "json"], stderr=subprocess.DEVNULL)
    assert sc.nginx_follows_relay(json.loads(out)) is follows
