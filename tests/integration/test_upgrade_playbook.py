# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade playbook from the installed collection, on localhost, with a git ref.

The checkout is a local git repository holding the project's 24.8-shaped and
26.8-shaped fixtures as two tagged commits. ./install.sh is a recording
stand-in: the real installer needs Sentry's Docker images, which cannot be had
here. No engine is used (upgrade_start off; the timers and the stack are
exercised by molecule/upgrade in a systemd container). Compose is the real v2 CLI.
"""

import json
import os
import shutil
import subprocess

import pytest

import checkouts
from conftest import REPO, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
FIXTURES = checkouts.FIXTURES
OVERRIDE = "docker-compose.override.yml"
MARK = "# sentry_selfhosted.memory"
OPERATOR = "services:\n  web:\n    environment:\n      SENTRY_MAIL_HOST: \"mail.example.com\"\n"
INSTALLER = """#!/bin/sh
# Recording stand-in for self-hosted's install.sh (the real one needs Sentry's
# Docker images, which cannot be had here): records its flags and the override
# it sees, and fails when asked to.
echo "install.sh $*" >> "$(dirname "$0")/.install-calls"
cp docker-compose.override.yml "$(dirname "$0")/.override-seen-by-install" 2>/dev/null || true
echo "running migrations"
if [ -e "$(dirname "$0")/.install-fails" ]; then echo "migration failed" >&2; exit 3; fi
"""

pytestmark = pytest.mark.skipif(
    not shutil.which("docker") or not shutil.which("git")
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="no git, or no docker CLI with the Compose v2 plugin (source hacking/env)")


def task(data, name):
    """The localhost result of the task called name (without its role prefix), in whichever play ran it: the
    playbook's first play only checks that upgrade_hosts names the hosts."""
    for play in data["plays"]:
        for item in play["tasks"]:
            if item["task"]["name"].split(" : ")[-1] == name:
                return item["hosts"]["localhost"]
    raise AssertionError("no task %r" % name)


def git(checkout, *args):
    return subprocess.run(["git", "-C", str(checkout)] + list(args), check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path):
    """A git checkout at 24.8.0 with tag 26.8.0 available, the operator's override beside it."""
    target = tmp_path / "sentry"
    target.mkdir()
    git(target, "init", "-q")
    (target / ".gitignore").write_text("docker-compose.override.yml\nrelay/config.yml\n.install-*\n.override-seen-by-install\n")
    for release, fixture in (("24.8.0", "checkout-24.8"), ("26.8.0", "checkout")):
        for name in os.listdir(os.path.join(FIXTURES, fixture)):
            src = os.path.join(FIXTURES, fixture, name)
            if os.path.isdir(src):
                shutil.copytree(src, target / name, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, target / name)
        (target / "install.sh").write_text(INSTALLER)
        os.chmod(target / "install.sh", 0o755)
        git(target, "add", "-A")
        git(target, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", release)
        git(target, "tag", release)
    git(target, "checkout", "-q", "24.8.0")
    (target / OVERRIDE).write_text(OPERATOR)
    return target


def play(tmp_path, ansible_env, checkout, *extra, **play_vars):
    play_vars = dict(dict(upgrade_hosts="localhost", sentry_selfhosted_dir=str(checkout), upgrade_ref="26.8.0",
                          upgrade_start=False, upgrade_timers=[],
                          upgrade_state_dir=str(tmp_path / "state"), compose_limits_total_memory_mb=20480,
                          compose_limits_use_measured=False), **play_vars)
    varsfile = tmp_path / "vars.json"
    varsfile.write_text(json.dumps(play_vars))
    proc = subprocess.run([tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.upgrade", "-e", "@%s" % varsfile]
                          + list(extra), env=ansible_env, capture_output=True, text=True, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"raw": proc.stdout + proc.stderr}


def limits_for(checkout, ram_mb=20480):
    """Our lines for the 24.8 checkout, as compose_limits left them before the upgrade."""
    from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_budget import plan as budget_plan
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose
    from ansible_collections.sentry_selfhosted.memory.plugins.modules import compose_override as co

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    class Module:
        params = dict(project_dir=str(checkout), plan=None, backup=False, apply=False, docker="docker")
        check_mode = False
        _diff = False

        def fail_json(self, msg, **kwargs):
            raise AssertionError(msg)

        def atomic_move(self, src, dest):
            os.rename(src, dest)

    compose = SentryCompose(str(checkout), run)
    Module.params["plan"] = budget_plan(compose.services(), ram_mb)
    co.ComposeOverride(Module(), compose).run()


def compose_ok(checkout):
    return subprocess.run(["docker", "compose", "--project-directory", str(checkout), "config", "-q"],
                          capture_output=True, check=False).returncode == 0


def test_check_mode_shows_the_plan_and_changes_nothing(tmp_path, ansible_env, checkout):
    limits_for(checkout)
    before = (checkout / OVERRIDE).read_text()
    head = git(checkout, "rev-parse", "HEAD")
    rc, data = play(tmp_path, ansible_env, checkout, "--check")
    assert rc == 0, data
    plan = task(data, "Show the plan")["msg"]
    assert plan[0] == "release: 24.8.0 -> 26.8.0"
    assert plan[1].startswith("services added: ") and "snuba-api" not in plan[1]
    assert set(plan[2].split(": ")[1].split(", ")) == {"worker", "cron", "geoipupdate"}
    preview = task(data, "Show the operator's part of the override as it stands during the installer")
    assert preview["diff"]["after"] == OPERATOR
    assert (checkout / OVERRIDE).read_text() == before and git(checkout, "rev-parse", "HEAD") == head
    assert not (tmp_path / "state").exists() and not (checkout / ".install-calls").exists()


def test_upgrade_with_a_git_ref_then_nothing_to_do(tmp_path, ansible_env, checkout):
    limits_for(checkout)
    assert "\n  worker: {mem_limit: " in (checkout / OVERRIDE).read_text()
    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc == 0, data
    assert git(checkout, "describe", "--tags").strip() == "26.8.0"
    assert (checkout / ".install-calls").read_text() == "install.sh --skip-user-creation --no-report-self-hosted-issues\n"
    # The installer's migrations ran with our limits lifted, the operator's part in place.
    assert (checkout / ".override-seen-by-install").read_text() == OPERATOR
    text = (checkout / OVERRIDE).read_text()
    assert OPERATOR.splitlines() == [line for line in text.splitlines() if MARK not in line]
    assert "worker:" not in text.replace("taskworker", "") and "\n  relay: {mem_limit: " in text
    assert compose_ok(checkout)
    stats = data["global_custom_stats"]["sentry_upgrade"]["localhost"]
    assert stats["release_from"] == "24.8.0" and stats["release_to"] == "26.8.0"
    assert sorted(stats["services_removed"]) == ["cron", "geoipupdate", "worker"]
    logs = [p for p in (tmp_path / "state").iterdir() if p.name.startswith("install-")]
    assert len(logs) == 1 and "running migrations" in logs[0].read_text() and oct(logs[0].stat().st_mode)[-3:] == "600"
    record = json.loads((tmp_path / "state" / "last-upgrade.json").read_text())
    assert record["release"] == "26.8.0"

    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc == 0 and data["stats"]["localhost"]["changed"] == 0, data
    assert len((checkout / ".install-calls").read_text().splitlines()) == 1


def test_failing_installer_restores_the_operators_files_and_says_where(tmp_path, ansible_env, checkout):
    limits_for(checkout)
    (checkout / "relay").mkdir(exist_ok=True)
    (checkout / "relay" / "config.yml").write_text("relay:\n  port: 3000  # operator's\n")
    (checkout / ".install-fails").write_text("")
    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc != 0
    failure = task(data, "Stop here, saying where and how to resume")["msg"]
    assert 'stopped at step "./install.sh"' in failure and str(tmp_path / "state") in failure
    assert (checkout / OVERRIDE).read_text() == OPERATOR
    assert (checkout / "relay" / "config.yml").read_text() == "relay:\n  port: 3000  # operator's\n"
    assert compose_ok(checkout)
    assert not (tmp_path / "state" / "last-upgrade.json").exists()


def test_operators_entry_for_a_service_the_target_drops_stops_before_anything(tmp_path, ansible_env, checkout):
    (checkout / OVERRIDE).write_text(OPERATOR + "  worker:\n    environment:\n      C_FORCE_ROOT: \"1\"\n")
    rc, data = play(tmp_path, ansible_env, checkout)
    assert rc != 0
    result = task(data, "Read the target's services (and check the override against them)")
    assert "worker (line 5)" in result["msg"]
    assert git(checkout, "describe", "--tags").strip() == "24.8.0"
    assert not (checkout / ".install-calls").exists() and not (tmp_path / "state").exists()
