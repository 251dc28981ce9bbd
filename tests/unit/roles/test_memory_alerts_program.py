# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_alerts' check program: sampling on fixture hosts, levels, alert states,
dedupe and resend, the Theil-Sen time-to-threshold estimate, and the outputs.

The docker CLI is the only double (it cannot run here); every figure is read
by the collection's host_memory from fixture trees of /proc and cgroup files.
"""

import base64
import importlib.util
import io
import json
import math
import os
import random
import shutil
import stat
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
HOSTS = os.path.join(REPO, "tests", "unit", "fixtures", "hosts")
PROGRAM = os.path.join(REPO, "roles", "memory_alerts", "files", "sentry_memory_alerts.py")
PROM_TEXT = os.path.join(REPO, "molecule", "memory_alerts", "files", "prom_text.py")
MIB = 1024 ** 2
GIB = 1024 ** 3


# As on the host: the program imports the module_utils copies beside it; here, the collection's own.
sys.path.insert(0, os.path.join(REPO, "plugins", "module_utils"))


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


alerts = load("sentry_memory_alerts", PROGRAM)
prom_text = load("prom_text", PROM_TEXT)


def inspect_item(cid, name, service, pid, memory=0):
    return {"Id": cid, "Name": "/" + name, "State": {"Pid": pid},
            "Config": {"Labels": {"com.docker.compose.service": service}},
            "HostConfig": {"Memory": memory, "CgroupnsMode": "private"}}


class FakeDocker:
    """Answers the one docker ps and one docker inspect a run makes."""

    def __init__(self, items, fail=None):
        self.items = items
        self.fail = fail
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if self.fail:
            return 1, "", self.fail
        if argv[1] == "ps":
            return 0, "".join(i["Id"] + "\n" for i in self.items), ""
        return 0, json.dumps([i for i in self.items if i["Id"] in argv[2:]]), ""


def which_docker(name):
    return "/usr/bin/" + name


def no_docker(name):
    return None


def make_config(tmp_path, **overrides):
    values = {"project_dir": str(tmp_path / "checkout"), "state_file": str(tmp_path / "state" / "state.json"),
              "peaks_file": str(tmp_path / "state" / "use-peaks.json"), "host": "sentry-1"}
    values.update(overrides)
    return alerts.make_config(values)


def checkout(tmp_path, release):
    path = tmp_path / "checkout"
    path.mkdir(exist_ok=True)
    (path / ".env").write_text("COMPOSE_PROJECT_NAME=sentry-self-hosted\nRELAY_IMAGE=getsentry/relay:%s\n" % release)
    return path


def host_tree(tmp_path, name):
    root = tmp_path / "host"
    shutil.copytree(os.path.join(HOSTS, name), str(root))
    return root


def set_available(root, available_bytes):
    """Rewrite MemAvailable (Relay's host figure is MemTotal - MemAvailable)."""
    path = root / "proc" / "meminfo"
    lines = [("MemAvailable:   %d kB" % (available_bytes // 1024)) if line.startswith("MemAvailable:") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def mem_total(root):
    for line in (root / "proc" / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


# --- sampling: Relay's own figure per the brief's table ----------------------

def test_sample_v2_relay_2408_unlimited_measures_the_whole_host(tmp_path):
    checkout(tmp_path, "24.8.0")
    docker = FakeDocker([inspect_item("aaaa", "sentry-self-hosted-relay-1", "relay", 4242)])
    config = make_config(tmp_path)
    got = alerts.sample(config, 1000.0, os.path.join(HOSTS, "v2-relay-unlimited"), docker, which_docker)
    assert got["relay"]["measures"] == "host"
    assert got["relay"]["used"] == (15988708 - 294132) * 1024
    assert got["relay"]["total"] == 15988708 * 1024
    assert got["containers_listed"] is True
    assert got["containers"][0]["usage"] == 1610612736 - 41943040
    assert got["containers"][0]["use"] == 1468006400
    assert got["oom_kills"] == 3
    assert got["pressure"]["some"]["avg10"] == 12.5
    # One docker ps and one docker inspect per run, never docker stats.
    assert [argv[1] for argv in docker.calls] == ["ps", "inspect"]
    assert "label=com.docker.compose.project=sentry-self-hosted" in docker.calls[0]


def test_sample_v2_relay_2408_limited_measures_its_cgroup(tmp_path):
    checkout(tmp_path, "24.8.0")
    docker = FakeDocker([inspect_item("bbbb", "sentry-self-hosted-relay-1", "relay", 4242, 2 * GIB)])
    got = alerts.sample(make_config(tmp_path), 1000.0, os.path.join(HOSTS, "v2-relay-limited"), docker, which_docker)
    assert got["relay"]["measures"] == "cgroup"
    assert got["relay"]["used"] == 1468006400
    assert got["relay"]["total"] == 2147483648


def test_sample_v1_relay_2608_unlimited_measures_its_cgroup_against_ram(tmp_path):
    checkout(tmp_path, "26.8.0")
    docker = FakeDocker([inspect_item("cccc", "sentry-self-hosted-relay-1", "relay", 4242)])
    got = alerts.sample(make_config(tmp_path), 1000.0, os.path.join(HOSTS, "v1-no-psi-two-swaps"), docker, which_docker)
    assert got["cgroup_mode"] == "v1"
    assert got["relay"]["measures"] == "cgroup"
    assert got["relay"]["used"] == 650000000
    assert got["relay"]["total"] == 32653476 * 1024
    assert got["pressure"] is None
    assert got["swap_areas"] == 2


def test_sample_without_docker_cli_still_samples_the_host(tmp_path):
    checkout(tmp_path, "26.8.0")
    got = alerts.sample(make_config(tmp_path), 1000.0, os.path.join(HOSTS, "v2-relay-unlimited"), FakeDocker([]), no_docker)
    assert got["containers_listed"] is False
    assert got["containers"] == []
    assert got["notes"] == ["containers were not listed (no docker CLI on the PATH)"]
    assert got["relay"]["measures"] == "host"
    assert "relay container not found" in got["relay"]["source"]


def test_sample_when_docker_fails_says_so(tmp_path):
    checkout(tmp_path, "26.8.0")
    docker = FakeDocker([], fail="Cannot connect to the Docker daemon")
    got = alerts.sample(make_config(tmp_path), 1000.0, os.path.join(HOSTS, "v2-relay-unlimited"), docker, which_docker)
    assert got["containers_listed"] is False
    assert "Cannot connect to the Docker daemon" in got["notes"][0]


def test_compose_project_comes_from_the_checkout(tmp_path):
    path = checkout(tmp_path, "26.8.0")
    (path / ".env.custom").write_text("COMPOSE_PROJECT_NAME=other\n")
    docker = FakeDocker([])
    alerts.sample(make_config(tmp_path), 1000.0, os.path.join(HOSTS, "v2-relay-unlimited"), docker, which_docker)
    assert "label=com.docker.compose.project=other" in docker.calls[0]


# --- levels ----------------------------------------------------------------

def relay(used, total=16 * GIB, max_bytes=None, would_reject=False):
    return {"measures": "host", "source": "host", "release": "24.8.0", "used": used, "total": total,
            "used_percent": round(100.0 * used / total, 2), "threshold": 0.95, "threshold_bytes": int(total * 0.95),
            "max_memory_bytes": max_bytes, "headroom": int(total * 0.95) - used, "would_reject": would_reject}


def test_levels_are_fractions_of_relays_total(tmp_path):
    levels = alerts.relay_levels(make_config(tmp_path), relay(0))
    assert levels == {"warning": int(16 * GIB * 0.85), "critical": int(16 * GIB * 0.90), "reject": int(16 * GIB * 0.95)}


def test_levels_follow_max_memory_bytes_when_it_comes_first(tmp_path):
    levels = alerts.relay_levels(make_config(tmp_path), relay(0, max_bytes=8 * GIB))
    assert levels["reject"] == int(8 * GIB * 0.95 / 0.95)
    assert levels["warning"] == int(8 * GIB * 0.85 / 0.95)


@pytest.mark.parametrize("given, message", [
    ({"warning_ratio": 0.9, "critical_ratio": 0.85}, "warning_ratio < critical_ratio"),
    ({"critical_ratio": 0.97}, "critical_ratio <= relay_threshold"),
    ({"relay_threshold": 1.5}, "relay_threshold must be in (0, 1]"),
    ({"webhook_format": "teams"}, "webhook_format"),
    ({"webhook_url": "http://x"}, "unknown configuration keys: webhook_url"),
    ({"trend_min_samples": 2}, "trend_min_samples"),
    ({"resend_interval_seconds": -60}, "resend_interval_seconds must be 0 or more, got -60"),
    ({"relay_max_memory_bytes": 0}, "relay_max_memory_bytes must be positive, got 0"),
    ({"webhook_format": "teams"}, "webhook_format must be one of json, slack, got 'teams'"),
])
def test_bad_configuration_is_refused(given, message):
    with pytest.raises(alerts.ConfigError) as exc:
        alerts.make_config(given)
    assert message in str(exc.value)


def test_comment_keys_are_allowed():
    assert alerts.make_config({"_comment": "managed"})["warning_ratio"] == 0.85


# --- trend: Theil-Sen on synthetic series ------------------------------------

TREND = {"trend_window_seconds": 3600, "trend_min_samples": 5, "trend_horizon_seconds": 48 * 3600}
REJECT = int(16 * GIB * 0.95)


def history(values, step=60.0, start=0.0):
    rel = relay(0)
    key = alerts.relay_key(rel)
    return [{"t": start + i * step, "relay": int(v), "rk": key, "s": {}} for i, v in enumerate(values)]


def trend_of(values):
    hist = history(values)
    now = hist[-1]["t"]
    return alerts.relay_trend(hist, now, relay(int(values[-1])), REJECT, TREND)


def test_steady_series_has_no_time_to_threshold():
    got = trend_of([10 * GIB] * 60)
    assert got["slope"] == 0
    assert got["seconds_to_threshold"] is None


def test_growing_series_gives_the_exact_time_left():
    rate = 1 * MIB  # bytes per second
    values = [10 * GIB + rate * 60 * i for i in range(60)]
    got = trend_of(values)
    assert got["slope"] == pytest.approx(rate)
    assert got["seconds_to_threshold"] == pytest.approx((REJECT - values[-1]) / rate, rel=1e-6)


def test_noisy_growth_with_spikes_stays_close():
    rng = random.Random(7)
    rate = 512 * 1024
    values = [10 * GIB + rate * 60 * i + rng.gauss(0, 64 * MIB) for i in range(60)]
    # A few one-minute spikes (a burst, a compaction) must not move a robust fit much.
    for index in (10, 25, 40):
        values[index] += 3 * GIB
    got = trend_of(values)
    expected = (REJECT - (10 * GIB + rate * 60 * 59)) / float(rate)
    assert got["slope"] == pytest.approx(rate, rel=0.15)
    assert got["seconds_to_threshold"] == pytest.approx(expected, rel=0.15)


def test_least_squares_would_be_fooled_by_the_same_spikes():
    """Why a robust fit: an ordinary least-squares slope moves far on three spikes near the end."""
    values = [10 * GIB] * 60
    for index in (55, 57, 59):
        values[index] += 3 * GIB
    points = [(i * 60.0, v) for i, v in enumerate(values)]
    mean_t = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    ols = sum((t - mean_t) * (y - mean_y) for t, y in points) / sum((t - mean_t) ** 2 for t, dummy in points)
    assert ols > 100 * 1024
    assert alerts.theil_sen(points)[0] == 0


def test_shrinking_series_has_no_time_to_threshold():
    got = trend_of([14 * GIB - 2 * MIB * 60 * i for i in range(60)])
    assert got["slope"] < 0
    assert got["seconds_to_threshold"] is None


def test_too_few_samples_give_no_estimate():
    got = trend_of([10 * GIB + i * GIB for i in range(4)])
    assert got["slope"] is None
    assert got["seconds_to_threshold"] is None


def test_growth_beyond_the_horizon_is_not_reported():
    got = trend_of([8 * GIB + 1024 * 60 * i for i in range(60)])  # 1 KiB/s: ~2 months away
    assert got["slope"] == pytest.approx(1024)
    assert got["seconds_to_threshold"] is None


def test_samples_of_another_figure_are_not_mixed_in():
    hist = history([2 * GIB + i * GIB for i in range(10)])
    for entry in hist:
        entry["rk"] = "cgroup/2147483648"
    got = alerts.relay_trend(hist, hist[-1]["t"], relay(10 * GIB), REJECT, TREND)
    assert got["samples"] == 0
    assert got["slope"] is None


def test_container_growth_names_the_grower():
    hist = history([10 * GIB] * 61)
    for i, entry in enumerate(hist):
        entry["s"] = {"sentry-self-hosted-kafka-1": 1 * GIB + 5 * MIB * i, "sentry-self-hosted-web-1": 900 * MIB}
    growth = alerts.container_growth(hist, hist[-1]["t"], dict(TREND))
    assert growth[0]["container"] == "sentry-self-hosted-kafka-1"
    assert growth[0]["bytes"] == 300 * MIB
    assert growth[1]["bytes"] == 0
    words = alerts.trend_words({"seconds_to_threshold": 5 * 3600, "slope": 1.0}, growth,
                               {"growth_min_bytes": 16 * MIB, "trend_horizon_seconds": 48 * 3600})
    assert words == "Relay will start rejecting events in about 5 h; sentry-self-hosted-kafka-1 grew 300.0 MiB in the last hour"


def test_record_keeps_only_the_window():
    config = alerts.make_config({})
    hist = []
    sample = {"relay": relay(GIB), "containers": [{"name": "c", "use": 5, "usage": 50}]}
    for minute in range(100):
        hist = alerts.record(hist, sample, minute * 60.0, config)
    assert len(hist) == 61
    assert hist[0]["t"] == 39 * 60.0
    assert hist[-1]["s"] == {"c": 5}


# --- alert states, dedupe and resend ------------------------------------------

def evaluate_used(config, used, trend=None, containers=None, listed=True, previous=None):
    sample = {"relay": relay(used), "containers": containers or [], "containers_listed": listed}
    levels = alerts.relay_levels(config, sample["relay"])
    trend = trend or {"slope": None, "seconds_to_threshold": None}
    return alerts.evaluate(config, sample, levels, trend, [], previous or {})


def test_ok_warning_critical_ok_each_sent_once(tmp_path):
    config = make_config(tmp_path, resend_interval_seconds=3600)
    state = {"alerts": {}}
    sent = []
    for minute, used in enumerate([10 * GIB, 14 * GIB, 14 * GIB, 15 * GIB, 15 * GIB, 12 * GIB, 12 * GIB]):
        now = minute * 60.0
        evaluated = evaluate_used(config, used)
        alerts.update_alerts(state, evaluated, now)
        due = alerts.due(state, evaluated, "webhook", now, config["resend_interval_seconds"])
        alerts.mark_sent(state, due, "webhook", now)
        sent.append([(d["key"], d["previous"], d["level"], d["kind"]) for d in due])
    assert sent == [
        [],
        [("relay", "ok", "warning", "raised")],
        [],
        [("relay", "warning", "critical", "raised")],
        [],
        [("relay", "critical", "ok", "resolved")],
        [],
    ]


def test_unacknowledged_level_is_resent_after_the_interval_only(tmp_path):
    config = make_config(tmp_path)
    state = {"alerts": {}}
    evaluated = evaluate_used(config, 15 * GIB)
    kinds = []
    for now in (0.0, 60.0, 3599.0, 3600.0, 3660.0, 7200.0):
        alerts.update_alerts(state, evaluated, now)
        due = alerts.due(state, evaluated, "journal", now, 3600)
        alerts.mark_sent(state, due, "journal", now)
        kinds.append([d["kind"] for d in due])
    assert kinds == [["raised"], [], [], ["repeated"], [], ["repeated"]]


def test_resend_zero_sends_once(tmp_path):
    config = make_config(tmp_path)
    state = {"alerts": {}}
    evaluated = evaluate_used(config, 15 * GIB)
    counts = []
    for now in (0.0, 10000.0, 100000.0):
        alerts.update_alerts(state, evaluated, now)
        due = alerts.due(state, evaluated, "journal", now, 0)
        alerts.mark_sent(state, due, "journal", now)
        counts.append(len(due))
    assert counts == [1, 0, 0]


def test_channels_are_told_independently(tmp_path):
    config = make_config(tmp_path)
    state = {"alerts": {}}
    evaluated = evaluate_used(config, 15 * GIB)
    alerts.update_alerts(state, evaluated, 0.0)
    alerts.mark_sent(state, alerts.due(state, evaluated, "journal", 0.0, 0), "journal", 0.0)
    # The webhook failed at 0: it is still due at 60 although the journal was told.
    assert [d["key"] for d in alerts.due(state, evaluated, "webhook", 60.0, 0)] == ["relay"]
    assert alerts.due(state, evaluated, "journal", 60.0, 0) == []


def test_container_warning_at_its_limit_fraction_and_gone_container_resolves(tmp_path):
    config = make_config(tmp_path, service_warning_ratio=0.9)
    kafka = {"name": "sentry-self-hosted-kafka-1", "service": "kafka", "use": int(1.875 * GIB), "limit": 2 * GIB}
    # Page cache near the limit is no warning: the kernel drops it before the limit kills anything.
    web = {"name": "sentry-self-hosted-web-1", "service": "web", "use": GIB, "usage": int(1.95 * GIB), "limit": 2 * GIB}
    free = {"name": "sentry-self-hosted-redis-1", "service": "redis", "use": GIB, "limit": None}
    got = evaluate_used(config, GIB, containers=[kafka, web, free])
    assert got["container:sentry-self-hosted-kafka-1"]["level"] == "warning"
    assert "uses 1.9 GiB of its 2.0 GiB limit (94%; warning at 90%)" in got["container:sentry-self-hosted-kafka-1"]["message"]
    assert got["container:sentry-self-hosted-web-1"]["level"] == "ok"
    assert "container:sentry-self-hosted-redis-1" not in got
    previous = {"container:sentry-self-hosted-kafka-1": "warning"}
    assert evaluate_used(config, GIB, previous=previous)["container:sentry-self-hosted-kafka-1"]["level"] == "ok"
    # Not listed this time: nothing is known, the level stays.
    assert evaluate_used(config, GIB, listed=False, previous=previous)["container:sentry-self-hosted-kafka-1"]["level"] == "warning"


def test_trend_warning_only_while_below_the_warning_level(tmp_path):
    config = make_config(tmp_path, trend_warning_seconds=3 * 3600)
    soon = {"slope": 1e5, "seconds_to_threshold": 2 * 3600}
    late = {"slope": 1e3, "seconds_to_threshold": 20 * 3600}
    assert evaluate_used(config, 10 * GIB, soon)["relay_trend"]["level"] == "warning"
    assert "about 2 h" in evaluate_used(config, 10 * GIB, soon)["relay_trend"]["message"]
    assert evaluate_used(config, 10 * GIB, late)["relay_trend"]["level"] == "ok"
    assert evaluate_used(config, 14 * GIB, soon)["relay_trend"]["level"] == "ok"
    off = make_config(tmp_path, trend_warning_seconds=0)
    assert evaluate_used(off, 10 * GIB, {"slope": 1e9, "seconds_to_threshold": 0})["relay_trend"]["level"] == "ok"


def test_relay_rejecting_is_critical_whatever_the_levels(tmp_path):
    config = make_config(tmp_path)
    sample = {"relay": relay(GIB, would_reject=True), "containers": [], "containers_listed": True}
    got = alerts.evaluate(config, sample, alerts.relay_levels(config, sample["relay"]),
                          {"slope": None, "seconds_to_threshold": None}, [], {})
    assert got["relay"]["level"] == "critical"


def test_oom_kills_are_an_event_within_one_boot():
    state = {}
    first = {"oom_kills": 3, "boot_id": "a"}
    assert alerts.oom_events(state, first) == []
    assert alerts.oom_events(state, {"oom_kills": 3, "boot_id": "a"}) == []
    events = alerts.oom_events(state, {"oom_kills": 5, "boot_id": "a"})
    assert events[0]["message"] == "the kernel's OOM killer killed 2 processes since the last check"
    # After a reboot the counter starts again: no event for the drop or the first count.
    assert alerts.oom_events(state, {"oom_kills": 1, "boot_id": "b"}) == []


# --- outputs ------------------------------------------------------------------

def test_journal_uses_sd_daemon_priorities_under_systemd():
    stream = io.StringIO()
    journal = alerts.hp.Journal(stream, systemd=True)
    journal.log("critical", "relay critical: x")
    journal.log("warning", "a\nb")
    journal.log("info", "summary")
    assert stream.getvalue() == "<2>relay critical: x\n<4>a b\n<6>summary\n"
    plain = io.StringIO()
    alerts.hp.Journal(plain, systemd=False).log("error", "boom")
    assert plain.getvalue() == "error: boom\n"


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "m.prom"
    target.write_text("old\n")
    alerts.hp.write_atomic(str(target), "new\n", 0o644)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ["m.prom"]


class Opener:
    """urlopen stand-in at the network boundary: records requests, or fails."""

    def __init__(self, fail=None, status=200):
        self.requests = []
        self.fail = fail
        self.status = status

    def __call__(self, request, timeout):
        self.requests.append({"url": request.full_url, "body": json.loads(request.data.decode()),
                              "headers": dict(request.header_items()), "timeout": timeout})
        if self.fail:
            raise self.fail

        class Response:
            status = self.status

            def close(self):
                pass

        return Response()


def run_host(tmp_path, release="24.8.0", **overrides):
    """A v2 host with Relay 24.8.0 unlimited (Relay measures the host), outputs in tmp_path."""
    checkout(tmp_path, release)
    root = host_tree(tmp_path, "v2-relay-unlimited")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "url").write_text("https://hooks.example/T000/B000/secret\n")
    values = {"metrics_file": str(tmp_path / "metrics" / "sentry_memory.prom"), "webhook_url_file": str(tmp_path / "url")}
    values.update(overrides)
    return root, make_config(tmp_path, **values)


def run(config, root, now, opener, docker=None):
    stream = io.StringIO()
    failures = alerts.run_once(config, alerts.hp.Journal(stream, systemd=True), now, str(root),
                               docker or FakeDocker([inspect_item("aaaa", "sentry-self-hosted-relay-1", "relay", 4242)]),
                               which_docker, opener)
    return failures, stream.getvalue()


def test_run_once_alerts_on_change_and_writes_valid_metrics(tmp_path):
    root, config = run_host(tmp_path)
    total = mem_total(root)
    opener = Opener()
    set_available(root, int(total * 0.5))
    failures, log = run(config, root, 1000.0, opener)
    assert failures == 0
    assert opener.requests == []
    assert "<6>Relay's memory figure is 50.0%" in log
    set_available(root, int(total * 0.12))  # 88% used: warning
    failures, log = run(config, root, 1060.0, opener)
    assert failures == 0
    assert len(opener.requests) == 1
    body = opener.requests[0]["body"]
    assert body["host"] == "sentry-1"
    assert [(a["key"], a["level"], a["previous"]) for a in body["alerts"]] == [("relay", "warning", "ok")]
    assert body["relay"]["measures"] == "host"
    assert opener.requests[0]["headers"]["Content-type"] == "application/json"
    assert "<4>relay warning: Relay's memory figure is 88.0%" in log
    failures, log = run(config, root, 1120.0, opener)
    assert len(opener.requests) == 1, "a level already sent is not sent again"
    assert "relay warning" not in log
    parsed = prom_text.parse((tmp_path / "metrics" / "sentry_memory.prom").read_text())
    samples = parsed["samples"]
    assert samples["sentry_memory_relay_total_bytes"][0]["value"] == total
    assert samples["sentry_memory_relay_info"][0]["labels"] == {"measures": "host", "release": "24.8.0", "cgroup_mode": "v2"}
    assert {s["labels"]["alert"]: s["value"] for s in samples["sentry_memory_alert_level"]}["relay"] == 1
    assert samples["sentry_memory_container_usage_bytes"][0]["labels"]["service"] == "relay"
    assert samples["sentry_memory_pressure_ratio"][0]["value"] == 0.125
    assert parsed["types"]["sentry_memory_oom_kills_total"] == "counter"
    state_dir = tmp_path / "state"
    # Made by the peaks' one writer as the units' StateDirectory= makes it on a host: root's, 0755, its files root's alone.
    assert stat.S_IMODE(os.stat(str(state_dir)).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(str(state_dir / "state.json")).st_mode) == 0o600


def test_growth_gives_time_left_in_every_output(tmp_path):
    root, config = run_host(tmp_path, trend_warning_seconds=8 * 3600)
    total = mem_total(root)
    opener = Opener()
    used = int(total * 0.60)
    rate = 256 * 1024  # bytes per second
    for minute in range(10):
        set_available(root, total - (used + rate * 60 * minute))
        failures, log = run(config, root, minute * 60.0, opener)
    assert failures == 0
    reject = int(total * 0.95)
    expected = (reject - (used + rate * 60 * 9)) / float(rate)
    samples = prom_text.parse((tmp_path / "metrics" / "sentry_memory.prom").read_text())["samples"]
    # MemAvailable is written in kB: the fit is exact to that rounding.
    assert samples["sentry_memory_relay_seconds_to_threshold"][0]["value"] == pytest.approx(expected, rel=0.01)
    assert samples["sentry_memory_relay_growth_bytes_per_second"][0]["value"] == pytest.approx(rate, rel=0.01)
    # The trend alert went out once, on the first run with enough samples (the 5th).
    assert len(opener.requests) == 1
    body = opener.requests[0]["body"]
    assert body["time"] == 4 * 60.0
    assert body["alerts"][0]["key"] == "relay_trend"
    at_fifth = (reject - (used + rate * 60 * 4)) / float(rate)
    assert body["trend"]["seconds_to_threshold"] == pytest.approx(at_fifth, rel=0.01)
    assert "Relay will start rejecting events in about %d h" % round(at_fifth / 3600) in body["alerts"][0]["message"]
    assert "Relay will start rejecting events in about" in log


def test_broken_webhook_is_logged_retried_and_stops_nothing(tmp_path):
    root, config = run_host(tmp_path)
    set_available(root, int(mem_total(root) * 0.05))  # critical
    broken = Opener(fail=OSError("connection refused"))
    failures, log = run(config, root, 1000.0, broken)
    assert failures == 1
    assert ("<3>webhook failed (POST to https://hooks.example failed (OSError: connection refused)); "
            "it will be retried on the next run") in log
    assert "<2>relay critical:" in log
    assert (tmp_path / "metrics" / "sentry_memory.prom").exists()
    assert (tmp_path / "state" / "state.json").exists()
    assert "secret" not in log
    fixed = Opener()
    failures, log = run(config, root, 1060.0, fixed)
    assert failures == 0
    assert [a["key"] for a in fixed.requests[0]["body"]["alerts"]] == ["relay"]
    assert "relay critical" not in log, "the journal was told already"


def test_webhook_error_status_counts_as_failure(tmp_path):
    root, config = run_host(tmp_path)
    set_available(root, int(mem_total(root) * 0.05))
    failures, log = run(config, root, 1000.0, Opener(status=500))
    assert failures == 1
    assert "HTTP 500" in log


def test_unwritable_metrics_directory_does_not_stop_the_webhook(tmp_path):
    root, config = run_host(tmp_path, metrics_file=str(tmp_path / "missing" / "sentry_memory.prom"))
    set_available(root, int(mem_total(root) * 0.05))
    opener = Opener()
    failures, log = run(config, root, 1000.0, opener)
    assert failures == 1
    assert "<3>cannot write the metrics file" in log
    assert len(opener.requests) == 1


def test_slack_body_is_text_only(tmp_path):
    root, config = run_host(tmp_path, webhook_format="slack")
    set_available(root, int(mem_total(root) * 0.05))
    opener = Opener()
    run(config, root, 1000.0, opener)
    body = opener.requests[0]["body"]
    assert list(body) == ["text"]
    assert body["text"].startswith("[sentry-1] CRITICAL: Relay's memory figure is 95.0%")


def test_oom_kill_reaches_the_webhook_once(tmp_path):
    root, config = run_host(tmp_path)
    set_available(root, int(mem_total(root) * 0.5))
    (root / "proc" / "sys" / "kernel" / "random").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "random" / "boot_id").write_text("b00t\n")
    opener = Opener()
    run(config, root, 1000.0, opener)
    (root / "proc" / "vmstat").write_text("oom_kill 4\n")
    failures, log = run(config, root, 1060.0, opener)
    assert failures == 0
    assert opener.requests[0]["body"]["events"][0]["message"] == "the kernel's OOM killer killed 1 process since the last check"
    assert "<4>oom: the kernel's OOM killer killed 1 process" in log
    run(config, root, 1120.0, opener)
    assert len(opener.requests) == 1


def test_every_run_keeps_the_peaks_of_use_that_compose_limits_plans_from(tmp_path):
    root, config = run_host(tmp_path, webhook_url_file=None)
    peaks = tmp_path / "state" / "use-peaks.json"
    assert run(config, root, 1000.0, Opener())[0] == 0
    # relay's container uses 1400 MiB (anon; its 136 MiB of page cache is not use).
    assert json.loads(peaks.read_text()) == {"version": 1, "since": 1000, "services": {"relay": {"mb": 1400, "at": 1000}}}
    assert oct(os.stat(str(peaks)).st_mode & 0o777) == "0o600"
    # Later runs at no higher use leave the file alone; the planner reads the same history.
    before = os.stat(str(peaks)).st_mtime_ns
    assert run(config, root, 1060.0, Opener())[0] == 0
    assert os.stat(str(peaks)).st_mtime_ns == before


@pytest.mark.parametrize("forge", ["group-writable", "symlink", "other-owner"])
def test_a_history_of_peaks_another_user_controls_is_neither_read_nor_written(tmp_path, forge):
    root, config = run_host(tmp_path, webhook_url_file=None)
    (tmp_path / "state").mkdir()
    peaks = tmp_path / "state" / "use-peaks.json"
    forged = json.dumps({"version": 1, "since": 1, "services": {"relay": {"mb": 1, "at": 1}}})
    if forge == "symlink":
        (tmp_path / "elsewhere.json").write_text(forged)
        peaks.symlink_to(tmp_path / "elsewhere.json")
    else:
        peaks.write_text(forged)
        os.chmod(str(peaks), 0o664 if forge == "group-writable" else 0o600)
        if forge == "other-owner":
            os.chown(str(peaks), 65534, 65534)
    failures, log = run(config, root, 1000.0, Opener())
    assert failures == 1
    problem = {"group-writable": "writable by others (mode 0664)", "symlink": "a symlink", "other-owner": "owned by uid 65534"}
    assert "<3>cannot record the peaks of use: %s (sentry_selfhosted_peaks_file) is %s" % (peaks, problem[forge]) in log
    target = tmp_path / "elsewhere.json" if forge == "symlink" else peaks
    assert target.read_text() == forged


def test_damaged_state_starts_afresh(tmp_path):
    root, config = run_host(tmp_path, webhook_url_file=None)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text("{not json")
    failures, log = run(config, root, 1000.0, Opener())
    assert failures == 0
    assert "<3>the state" in log and "is damaged" in log
    assert json.loads((tmp_path / "state" / "state.json").read_text())["version"] == 1


def test_main_refuses_a_bad_configuration(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"warning_ratio": 0.95}))
    assert alerts.main(["--config", str(path)]) == 2
    assert "warning_ratio < critical_ratio" in capsys.readouterr().out


def test_metrics_label_values_are_escaped():
    metrics = alerts.Metrics()
    metrics.add("x_bytes", "gauge", "help", [({"c": 'a"b\\c\nd'}, 1), ({"c": "z"}, None)])
    parsed = prom_text.parse(metrics.text())
    assert parsed["samples"]["x_bytes"] == [{"labels": {"c": 'a"b\\c\nd'}, "value": 1.0}]


@pytest.mark.parametrize("seconds, words", [(30, "30 s"), (600, "10 min"), (5 * 3600, "5 h"), (5 * 86400, "5 days")])
def test_durations_read_naturally(seconds, words):
    assert alerts.human_duration(seconds) == words


def test_median_and_theil_sen_basics():
    assert alerts.median([3, 1, 2]) == 2
    assert alerts.median([4, 1, 2, 3]) == 2.5
    assert alerts.theil_sen([(0, 1)]) is None
    slope, intercept = alerts.theil_sen([(0, 1), (1, 3), (2, 5)])
    assert (slope, intercept) == (2, 1)
    assert not math.isnan(slope)


def test_gone_container_resolution_is_retried_until_sent_then_forgotten(tmp_path):
    config = make_config(tmp_path)
    state = {"alerts": {}}
    kafka = {"name": "k", "service": "kafka", "use": int(1.95 * GIB), "limit": 2 * GIB}

    def step(now, containers, delivered):
        previous = dict((k, v["level"]) for k, v in state["alerts"].items())
        evaluated = evaluate_used(config, GIB, containers=containers, previous=previous)
        alerts.update_alerts(state, evaluated, now)
        due = [d for d in alerts.due(state, evaluated, "webhook", now, 0) if d["key"].startswith("container:")]
        if delivered:
            alerts.mark_sent(state, due, "webhook", now)
        return [(d["key"], d["level"]) for d in due]

    assert step(0.0, [kafka], True) == [("container:k", "warning")]
    assert step(60.0, [], False) == [("container:k", "ok")]  # the webhook was down
    assert step(120.0, [], True) == [("container:k", "ok")]  # sent now
    assert "container:k" not in state["alerts"]
    assert step(180.0, [], True) == []


def test_run_stands_aside_while_install_sh_runs_in_the_checkout(tmp_path):
    root, config = run_host(tmp_path)
    proc = root / "proc" / "31337"
    proc.mkdir()
    (proc / "cmdline").write_bytes(b"bash\0./install.sh\0--skip-user-creation\0")
    (proc / "status").write_text("Name:\tbash\nUid:\t0\t0\t0\t0\n")  # root's, as an install is
    (proc / "cwd").symlink_to(config["project_dir"])
    (tmp_path / "checkout" / "install.sh").write_text("#!/bin/bash\n")
    failures, journal = run(config, root, 1000.0, opener=None)
    assert failures == 0
    assert "install.sh is running in %s (pid 31337): standing aside" % config["project_dir"] in journal
    assert not os.path.exists(config["metrics_file"])
    assert not os.path.exists(config["state_file"])
    (proc / "cwd").unlink()
    (proc / "cwd").symlink_to(str(tmp_path))  # an install.sh of another checkout does not count
    failures, journal = run(config, root, 1060.0, opener=lambda *a, **k: None)
    assert "standing aside" not in journal
    assert os.path.exists(config["metrics_file"])


# --- hardening: operator files with any bytes, wrong shapes, webhook secrets ---

def test_latin1_bytes_in_the_env_files_are_noted_not_fatal(tmp_path):
    root, config = run_host(tmp_path, webhook_url_file=None)
    env = tmp_path / "checkout" / ".env"
    env.write_bytes(env.read_bytes() + b"# Stra\xdfe\n")
    (tmp_path / "checkout" / ".env.custom").write_bytes(b"\xe9=1\nCOMPOSE_PROJECT_NAME=sentry-self-hosted\n")
    failures, log = run(config, root, 1000.0, Opener())
    assert failures == 0
    assert "%s line 3 is not UTF-8: read with the bad bytes replaced" % env in log
    assert "%s line 1 is not UTF-8" % (tmp_path / "checkout" / ".env.custom") in log
    assert "Relay's memory figure is" in log


@pytest.mark.parametrize("given, message", [
    ([], "it must hold a JSON object, got list"),
    ({"relay_threshold": "abc"}, "relay_threshold must be a number, got 'abc'"),
    ({"journal": "yes"}, "journal must be true or false"),
    ({"state_file": ["x"]}, "state_file must be a non-empty string"),
    ({"trend_min_samples": None}, "trend_min_samples must be a number, got None"),
])
def test_configuration_of_the_wrong_shape_is_refused_in_one_line(tmp_path, capsys, given, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(given))
    assert alerts.main(["--config", str(path)]) == 2
    out = capsys.readouterr().out
    assert message in out and str(path) in out
    assert "Traceback" not in out


@pytest.mark.parametrize("state", [
    {"version": 1, "alerts": [], "history": []},
    {"version": 1, "alerts": {"relay": {"level": "loud", "since": 0, "sent": {}}}, "history": []},
    {"version": 1, "alerts": {}, "history": [{"t": "yesterday"}]},
    {"version": 1, "alerts": {}, "history": [], "oom": "many"},
])
def test_state_of_the_wrong_shape_starts_afresh(tmp_path, state):
    root, config = run_host(tmp_path, webhook_url_file=None)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "state.json").write_text(json.dumps(state))
    failures, log = run(config, root, 1000.0, Opener())
    assert failures == 0
    assert "<3>the state %s is damaged" % (tmp_path / "state" / "state.json") in log
    assert json.loads((tmp_path / "state" / "state.json").read_text())["alerts"]["relay"]["level"] == "critical"


def forged_state(now):
    """A state saying the critical Relay alert reached every channel a minute ago: read, it would silence the alert."""
    told = {"level": "critical", "at": now - 60}
    return {"version": 1, "history": [],
            "alerts": {"relay": {"level": "critical", "since": now - 600, "sent": {"journal": told, "webhook": told}}}}


@pytest.mark.parametrize("forge", ["group-writable", "other-writable", "symlink", "other-owner", "other-owners-directory"])
def test_a_state_another_user_controls_is_neither_read_nor_replaced(tmp_path, forge):
    root, config = run_host(tmp_path, peaks_file=None)
    set_available(root, int(mem_total(root) * 0.05))  # critical
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    path = state_dir / "state.json"
    forged = json.dumps(forged_state(1000.0))
    if forge == "symlink":
        (tmp_path / "elsewhere.json").write_text(forged)
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        path.write_text(forged)
        os.chmod(str(path), {"group-writable": 0o620, "other-writable": 0o602}.get(forge, 0o600))
        if forge == "other-owner":
            os.chown(str(path), 65534, 65534)
        if forge == "other-owners-directory":
            os.chown(str(state_dir), 65534, 65534)
    opener = Opener()
    failures, log = run(config, root, 1000.0, opener)
    assert "<3>the state %s is not root's alone, so it is not read" % path in log
    # Started afresh: the alert is raised in the journal and through the webhook, not silenced.
    assert "<2>relay critical:" in log
    assert [(a["key"], a["level"], a["previous"]) for a in opener.requests[0]["body"]["alerts"]] == [("relay", "critical", "ok")]
    # Not replaced either: the file stays as it was for an administrator, and the run fails so that the unit shows it.
    assert failures == 1 and "<3>cannot save the state %s:" % path in log
    assert os.path.islink(str(path)) == (forge == "symlink")
    assert (tmp_path / "elsewhere.json" if forge == "symlink" else path).read_text() == forged
    assert os.lstat(str(path)).st_uid == (65534 if forge == "other-owner" else 0)
    assert sorted(os.listdir(str(state_dir))) == ["state.json"]


def test_webhook_userinfo_is_sent_as_basic_auth_and_kept_out_of_the_url(tmp_path):
    root, config = run_host(tmp_path)
    (tmp_path / "url").write_text("https://alerts:p%40ss@hooks.example:8443/T000/B000/secret?token=abc\n")
    set_available(root, int(mem_total(root) * 0.05))
    opener = Opener()
    failures, _log = run(config, root, 1000.0, opener)
    assert failures == 0
    request = opener.requests[0]
    assert request["url"] == "https://hooks.example:8443/T000/B000/secret?token=abc"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"alerts:p@ss").decode()


@pytest.mark.parametrize("url", [
    "https://hooks.example/T000/B000/sec ret",  # urllib's own error would quote the path
    "https://alerts:hunter2@hooks.example:80x/T000/B000/secret",
    "ftp://alerts:hunter2@hooks.example/T000/B000/secret",
])
def test_webhook_url_that_cannot_be_used_is_logged_without_its_secrets(tmp_path, url):
    root, config = run_host(tmp_path)
    (tmp_path / "url").write_text(url + "\n")
    set_available(root, int(mem_total(root) * 0.05))
    failures, log = run(config, root, 1000.0, None)  # the real urllib: it fails before any connection
    assert failures == 1
    assert "<3>webhook failed" in log
    for secret in ("T000", "B000", "secret", "sec ret", "hunter2", "alerts:"):
        assert secret not in log.split("<3>webhook failed", 1)[1]


def test_webhook_errors_name_the_host_and_the_status_only(tmp_path):
    root, config = run_host(tmp_path)
    set_available(root, int(mem_total(root) * 0.05))
    failures, log = run(config, root, 1000.0, Opener(fail=OSError("cannot reach https://hooks.example/T000/B000/secret")))
    assert failures == 1
    assert "POST to https://hooks.example failed (OSError: cannot reach <redacted>)" in log
    assert "T000" not in log
