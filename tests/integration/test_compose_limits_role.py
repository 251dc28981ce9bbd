# SPDX-License-Identifier: GPL-3.0-or-later
"""The compose_limits role from the installed collection, on localhost, against a copy of the checkout fixture.

Real Ansible, real Compose v2 CLI (hacking/env puts it in DOCKER_CONFIG); no
engine is needed because compose_limits_apply is off (the apply path is unit-tested).
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import checkouts
from conftest import REPO, task, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
FIXTURE = checkouts.FIXTURE
OVERRIDE = "docker-compose.override.yml"

pytestmark = pytest.mark.skipif(
    not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="no docker CLI with the Compose v2 plugin (source hacking/env)")


@pytest.fixture
def checkout(tmp_path):
    target = tmp_path / "sentry"
    shutil.copytree(FIXTURE, target)
    return target


def play(tmp_path, ansible_env, checkout, *extra, **role_vars):
    role_vars = dict(dict(sentry_selfhosted_dir=str(checkout), compose_limits_apply=False, compose_limits_total_memory_mb=16384,
                          compose_limits_use_measured=False), **role_vars)
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"name": "Limits", "hosts": "localhost", "gather_facts": False,
                                     "roles": [{"role": "sentry_selfhosted.memory.compose_limits", "vars": role_vars}]}]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, str(playbook)] + list(extra),
                          env=ansible_env, capture_output=True, text=True, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"raw": proc.stdout + proc.stderr}


def test_role_writes_then_is_idempotent_and_check_mode_shows_a_diff(tmp_path, ansible_env, checkout):
    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc == 0, data
    assert data["stats"]["localhost"]["changed"] == 1
    table = task(data, "Show the plan")["msg"]
    assert table[0] == "changes: docker-compose.override.yml: limits of 12 services"
    assert table[-3].startswith("usual use ") and "(95% of 16384 MiB RAM, less 512 MiB for the OS)" in table[-3]
    assert table[-2].startswith("limits add up to ")
    assert table[-1] == "no containers measured: planned from the table of usual figures"
    assert task(data, "Publish what this run changes (compose_limits_changes)")["ansible_facts"] == {
        "compose_limits_changes": ["docker-compose.override.yml: limits of 12 services"]}
    written = (checkout / OVERRIDE).read_text()
    assert "mem_limit:" in written and "KAFKA_HEAP_OPTS" in written

    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 0
    assert task(data, "Show the plan")["msg"][0] == "changes: none"

    rc, data = play(tmp_path, ansible_env, checkout, "--check", "--diff", compose_limits_total_memory_mb=24576)
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 1
    result = task(data, "Write the limits into docker-compose.override.yml, recreate what changed, keep the peaks of use")
    diff = result["diff"][0] if isinstance(result["diff"], list) else result["diff"]
    assert diff["before"] == written and diff["after"] != written and "mem_limit" in diff["after"]
    assert (checkout / OVERRIDE).read_text() == written
    assert not [p for p in checkout.iterdir() if p.name.endswith("~")]


def test_check_mode_on_a_fresh_checkout_writes_nothing(tmp_path, ansible_env, checkout):
    rc, data = play(tmp_path, ansible_env, checkout, "--check")
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 1
    assert not (checkout / OVERRIDE).exists()


@pytest.mark.parametrize("role_vars, message", [
    (dict(compose_limits_ratio=1.5), "compose_limits_ratio=1.5 is not in (0, 1)"),
    (dict(compose_limits_overrides={"worker": 512}), "overrides name services the checkout does not run: worker"),
    (dict(compose_limits_total_memory_mb=4096), "This host has 4096 MiB of RAM, below the 14000 MB (13352 MiB) upstream's installer"),
    (dict(compose_limits_total_memory_mb=4096), "but this host keeps 3379 MiB below Relay's threshold"),
    (dict(compose_limits_total_memory_mb=4096), "Options: 14 GiB of RAM or more."),
    (dict(compose_limits_total_memory_mb=4096), "docker-compose.override.yml was left as it was: "),
    (dict(compose_limits_total_memory_mb=14336, compose_limits_strict=True), "In strict mode the 12 services need"),
    (dict(compose_limits_table={"web": {"typical": 100}}), "typical is now usual"),
    (dict(sentry_selfhosted_dir="/nonexistent/sentry"), "is not a self-hosted Sentry checkout"),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, ansible_env, checkout, role_vars, message):
    rc, data = play(tmp_path, ansible_env, checkout, **role_vars)
    assert rc != 0
    assert message in json.dumps(data)
    assert not (checkout / OVERRIDE).exists()


def web_limit_mb(checkout):
    config = subprocess.run(["docker", "compose", "--project-directory", str(checkout), "config", "--format", "json"],
                            capture_output=True, text=True, check=True)
    web = json.loads(config.stdout)["services"]["web"]
    return int(web.get("mem_limit") or web["deploy"]["resources"]["limits"]["memory"]) // (1024 * 1024)


def test_remembered_peaks_count_as_measured_and_are_kept_for_the_next_run(tmp_path, ansible_env, checkout):
    peaks = tmp_path / "state" / "peaks.json"
    peaks.parent.mkdir()
    # Two days ago web peaked at 2500 MiB of use; worker is not a service of this checkout.
    since = int(time.time()) - 2 * 86400
    peaks.write_text(json.dumps({"version": 1, "since": since, "services": {"web": {"mb": 2500, "at": since},
                                                                            "worker": {"mb": 900, "at": since}}}))
    measured = dict(compose_limits_use_measured=True, sentry_selfhosted_peaks_file=str(peaks), compose_limits_total_memory_mb=24576)

    rc, data = play(tmp_path, ansible_env, checkout, **measured)
    assert rc == 0, data
    table = task(data, "Show the plan")["msg"]
    assert [line for line in table if line.startswith("web ")][0].endswith("measured")
    assert table[-1].startswith("planned from the peaks of use of 1 services recorded since ") and table[-1].endswith("(2.0 days)")
    # The lowest limit is the peak plus 20%.
    assert web_limit_mb(checkout) >= 3000
    remembered = json.loads(peaks.read_text())
    # The history keeps what it had (worker too: another checkout's run may need it), and its start.
    assert remembered["services"]["web"] == {"mb": 2500, "at": since} and remembered["since"] == since
    assert oct(peaks.stat().st_mode & 0o777) == "0o600"

    rc, data = play(tmp_path, ansible_env, checkout, **measured)
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 0, data

    rc, data = play(tmp_path, ansible_env, checkout, compose_limits_forget_peaks=True, **measured)
    assert rc == 0, data
    # Back at its figure from the table, web may share a row with services of the same limit.
    web = [line for line in task(data, "Show the plan")["msg"] if "web" in line.split("  ")[0].split(", ")]
    assert len(web) == 1 and web[0].endswith("table")
    assert json.loads(peaks.read_text())["services"] == {}


@pytest.mark.parametrize("forge", ["group-writable", "symlink"])
def test_a_history_of_peaks_another_user_could_write_is_refused(tmp_path, ansible_env, checkout, forge):
    peaks = tmp_path / "peaks.json"
    history = json.dumps({"version": 1, "since": 1, "services": {"web": {"mb": 64, "at": 1}}})
    if forge == "symlink":
        (tmp_path / "elsewhere.json").write_text(history)
        peaks.symlink_to(tmp_path / "elsewhere.json")
    else:
        peaks.write_text(history)
        os.chmod(str(peaks), 0o666)
    rc, data = play(tmp_path, ansible_env, checkout, compose_limits_use_measured=True, sentry_selfhosted_peaks_file=str(peaks))
    assert rc != 0
    text = json.dumps(data)
    assert "(sentry_selfhosted_peaks_file) is %s" % ("a symlink" if forge == "symlink" else "writable by others (mode 0666)") in text
    assert not (checkout / OVERRIDE).exists() and peaks.read_text() == history


def test_check_mode_on_a_host_too_small_warns_and_finishes(tmp_path, ansible_env, checkout):
    rc, data = play(tmp_path, ansible_env, checkout, "--check", compose_limits_total_memory_mb=4096)
    assert rc == 0, data
    assert task(data, "Show the plan")["msg"] == ["changes: none", task(data, "Show the plan")["msg"][1]]
    assert task(data, "Show the plan")["msg"][1].startswith(
        "WARNING (check mode; a real run stops here): This host has 4096 MiB of RAM, below the 14000 MB")
    assert data["stats"]["localhost"]["changed"] == 0 and not (checkout / OVERRIDE).exists()


def test_check_mode_creates_no_peaks_file(tmp_path, ansible_env, checkout):
    peaks = tmp_path / "state" / "peaks.json"
    rc, data = play(tmp_path, ansible_env, checkout, "--check", compose_limits_use_measured=True, sentry_selfhosted_peaks_file=str(peaks))
    assert rc == 0, data
    assert not peaks.parent.exists() and not (checkout / OVERRIDE).exists()


def test_a_damaged_peaks_file_fails_before_anything_is_written(tmp_path, ansible_env, checkout):
    peaks = tmp_path / "peaks.json"
    peaks.write_text(json.dumps({"web": "a lot"}))
    rc, data = play(tmp_path, ansible_env, checkout, compose_limits_use_measured=True, sentry_selfhosted_peaks_file=str(peaks))
    assert rc != 0
    assert "memory_budget: remembered_peaks: not a version 1 peaks history" in json.dumps(data)
    assert not (checkout / OVERRIDE).exists() and json.loads(peaks.read_text()) == {"web": "a lot"}
