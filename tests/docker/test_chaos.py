# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory-leak chaos scenario on the full service list of real releases.

Each release's services (57 in 24.8.0, 74 in 25.9.0) run as stand-ins in a
2 GiB parent cgroup that stands for a 16 GiB host scaled down by 8, holding
what a busy host uses (12 GiB in all), sized by the compose_limits role's
default plan for 16 GiB from that host's history of peaks (see chaos_scenario.py).
The relay here is a stand-in of Relay's memory rule, not Relay; Sentry's
images cannot run here. The unprotected arm runs for 25.9.0 only.
bench/chaos.py runs a longer variant. Skipped without upstream's checkouts
(../shared/upstream/self-hosted beside the repository).
"""

import json
import os

import pytest

import chaos_scenario as chaos
import checkouts

SECONDS = int(os.environ.get("SENTRY_MEMORY_CHAOS_SECONDS", "45"))
LEAK_MB_PER_S = float(os.environ.get("SENTRY_MEMORY_CHAOS_LEAK_MB_PER_S", "30"))
SEED = int(os.environ.get("SENTRY_MEMORY_CHAOS_SEED", "11"))
RATE = float(os.environ.get("SENTRY_MEMORY_CHAOS_RATE", "20"))
EXPECTED_SERVICES = {"24.8.0": 57, "25.9.0": 74}
WITH = ["%s-with" % release for release in chaos.RELEASES]


@pytest.fixture(scope="module")
def results(engine, tmp_path_factory):
    missing = [r for r in chaos.RELEASES if r not in checkouts.upstream_releases()]
    if missing:
        pytest.skip("upstream's checkouts of %s are not at %s" % (", ".join(missing), checkouts.UPSTREAM))
    if not os.path.isdir(chaos.MEMORY_ROOT):
        pytest.fail("the chaos scenario needs the cgroup v1 memory controller at %s" % chaos.MEMORY_ROOT)
    found = chaos.run_all(str(tmp_path_factory.mktemp("chaos")), SECONDS, LEAK_MB_PER_S, SEED, RATE, engine)
    print("\n" + chaos.table(found))
    report = os.environ.get("SENTRY_MEMORY_CHAOS_REPORT")
    if report:
        with open(report, "w") as handle:
            json.dump(found, handle, indent=2)
    return dict((r["arm"], r) for r in found)


@pytest.mark.parametrize("arm", WITH + ["25.9.0-without"])
def test_every_service_of_the_release_runs_in_the_parent(results, arm):
    result = results[arm]
    assert result["services"] == EXPECTED_SERVICES[result["release"]]
    assert result["containers"] == result["services"]
    # The role planned every one of them, from its default table.
    assert result["planned_services"] == result["services"]


@pytest.mark.parametrize("arm", WITH)
def test_the_default_plan_keeps_the_rule_at_16_gib(results, arm):
    result = results[arm]
    # Planned from the busy host's history: 12 GiB in use, each service's reservation its use in whole steps.
    assert result["usual_sum_mb"] == chaos.IN_USE_MB and result["reservations_follow_use"], result
    # The rule, for the leaker: at its limit, every other service at its usual figure and the reserve
    # left to the OS, below Relay's threshold of RAM; the limits together may exceed RAM (only one
    # service is assumed to misbehave).
    assert result["usual_sum_mb"] - result["leaker_usual_mb"] + result["leaker_limit_mb"] <= result["threshold_mb"], result
    assert result["limit_sum_mb"] > chaos.PLANNED_MB, result
    # The stand-ins hold about the scaled usual figures (Python's floor makes it a little more).
    # (nginx's stand-in, a shell, holds nothing of its share; the leaker starts from its interpreter.)
    assert 0.97 * result["usual_sum_scaled_mb"] <= result["used_at_start_mb"] < result["usual_sum_scaled_mb"] * 1.25, result


def test_without_the_collection_the_stand_in_starts_rejecting(results):
    without = results["25.9.0-without"]
    assert without["rejected"] > 0, without
    assert without["first_503_s"] is not None and without["first_503_s"] < SECONDS
    # The stand-in counted what the load driver saw.
    assert without["relay_counted_rejected"] == without["rejected"]
    assert without["threshold_crossed_s"] is not None
    assert without["peak_used_percent"] >= 100 * chaos.RELAY_THRESHOLD


@pytest.mark.parametrize("arm", WITH)
def test_with_the_collection_no_envelope_is_rejected(results, arm):
    with_arm = results[arm]
    assert with_arm["envelopes_sent"] > 0.9 * SECONDS * RATE, with_arm
    assert with_arm["rejected"] == 0, with_arm
    assert with_arm["relay_counted_rejected"] == 0
    assert with_arm["load_errors"] == 0


@pytest.mark.parametrize("arm", WITH)
def test_with_the_collection_the_peak_stays_below_the_warning_ratio(results, arm):
    with_arm = results[arm]
    assert with_arm["peak_used_percent"] < 100 * chaos.WARNING_RATIO, with_arm
    assert with_arm["warning_ratio_crossed_s"] is None


@pytest.mark.parametrize("arm", WITH)
def test_the_leak_is_contained_by_its_limit_and_restart_policy(results, arm):
    with_arm = results[arm]
    leaker_limit = with_arm["limits_mb"][chaos.LEAKER]
    # The role's limit for the leaker, divided by the scale factor.
    assert leaker_limit == with_arm["leaker_limit_mb"] // chaos.FACTOR, with_arm["limits_mb"]
    # OOM-killed at its own limit (the engine's oom events) and restarted by its restart policy.
    assert with_arm["leaker_ooms"] >= 1, with_arm["oom_kills"]
    assert with_arm["leaker_restarts"] >= 1
    # No healthy service was OOM-killed or restarted.
    assert set(with_arm["oom_kills"]) == {chaos.LEAKER}, with_arm["oom_kills"]
    assert set(with_arm["restarts"]) == {chaos.LEAKER}, with_arm["restarts"]
    assert set(with_arm["oom_killed_now"]) <= {chaos.LEAKER}, with_arm["oom_killed_now"]
    # Relay's figure never came near its threshold: the restart program had nothing to do.
    assert with_arm["relay_restarts_by_program"] == 0


def test_the_early_warning_comes_before_any_threshold(results):
    with_arm, without = results["25.9.0-with"], results["25.9.0-without"]
    assert with_arm["first_warning_s"] is not None, with_arm["events"]
    assert with_arm["threshold_crossed_s"] is None
    # Earlier than the same leak took the unprotected project to Relay's threshold.
    assert without["threshold_crossed_s"] is not None
    assert with_arm["first_warning_s"] < without["threshold_crossed_s"]
