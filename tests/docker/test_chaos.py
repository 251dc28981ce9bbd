# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory-leak chaos scenario, short run: the outage without the collection, none with it.

Both arms run the same leak (seed, rate, duration) in a 2 GiB parent cgroup
that stands for the host (see chaos_scenario.py). The relay here is a stand-in
of Relay's memory rule, not Relay. bench/chaos.py runs a longer variant.
"""

import json
import os

import pytest

import chaos_scenario as chaos

SECONDS = int(os.environ.get("SENTRY_MEMORY_CHAOS_SECONDS", "75"))
LEAK_MB_PER_S = float(os.environ.get("SENTRY_MEMORY_CHAOS_LEAK_MB_PER_S", "30"))
SEED = int(os.environ.get("SENTRY_MEMORY_CHAOS_SEED", "11"))
RATE = float(os.environ.get("SENTRY_MEMORY_CHAOS_RATE", "20"))


@pytest.fixture(scope="module")
def results(engine, tmp_path_factory):
    if not os.path.isdir(os.path.join(chaos.MEMORY_ROOT)):
        pytest.fail("the chaos scenario needs the cgroup v1 memory controller at %s" % chaos.MEMORY_ROOT)
    found = chaos.run_both(str(tmp_path_factory.mktemp("chaos")), SECONDS, LEAK_MB_PER_S, SEED, RATE)
    print("\n" + chaos.table(found))
    report = os.environ.get("SENTRY_MEMORY_CHAOS_REPORT")
    if report:
        with open(report, "w") as handle:
            json.dump(found, handle, indent=2)
    return dict((r["arm"], r) for r in found)


def test_without_the_collection_the_stand_in_starts_rejecting(results):
    without = results["without"]
    assert without["rejected"] > 0, without
    assert without["first_503_s"] is not None and without["first_503_s"] < SECONDS
    # The stand-in counted what the load driver saw.
    assert without["relay_counted_rejected"] == without["rejected"]
    assert without["threshold_crossed_s"] is not None
    assert without["peak_used_percent"] >= 100 * chaos.RELAY_THRESHOLD


def test_with_the_collection_no_envelope_is_rejected(results):
    with_arm = results["with"]
    assert with_arm["envelopes_sent"] > 0.9 * SECONDS * RATE, with_arm
    assert with_arm["rejected"] == 0, with_arm
    assert with_arm["relay_counted_rejected"] == 0
    assert with_arm["load_errors"] == 0


def test_with_the_collection_the_peak_stays_below_the_warning_ratio(results):
    with_arm = results["with"]
    assert with_arm["peak_used_percent"] < 100 * chaos.WARNING_RATIO, with_arm
    assert with_arm["warning_ratio_crossed_s"] is None


def test_the_leak_is_contained_by_its_limit_and_restart_policy(results):
    with_arm = results["with"]
    leaker_limit = with_arm["limits_mb"]["leaker"]
    # A limit from the budget table's default row, well below the parent.
    assert 0 < leaker_limit < chaos.PARENT_MB * (chaos.WARNING_RATIO - 0.5), with_arm["limits_mb"]
    # OOM-killed at its own limit (the engine's oom events) and restarted by its restart policy;
    # no other service was killed.
    assert with_arm["leaker_ooms"] >= 1, with_arm["oom_kills"]
    assert set(with_arm["oom_kills"]) == {"leaker"}, with_arm["oom_kills"]
    assert with_arm["leaker_restarts"] >= 1
    # Relay's figure never came near its threshold: the restart program had nothing to do.
    assert with_arm["relay_restarts_by_program"] == 0


def test_the_early_warning_comes_before_any_threshold(results):
    with_arm, without = results["with"], results["without"]
    assert with_arm["first_warning_s"] is not None, with_arm["events"]
    assert with_arm["threshold_crossed_s"] is None
    # Earlier than the same leak took the unprotected project to Relay's threshold.
    assert without["threshold_crossed_s"] is not None
    assert with_arm["first_warning_s"] < without["threshold_crossed_s"]
