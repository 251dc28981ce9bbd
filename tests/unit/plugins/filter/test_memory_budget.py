# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory_budget filter: budget, minimums, overrides, measured sizing, knobs."""

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb

SMALL = ["kafka", "clickhouse", "postgres", "redis", "web", "relay", "nginx", "snuba-api",
         "snuba-errors-consumer", "events-consumer"]
MIB = 1024 * 1024


def limits(result):
    return dict((n, s["mem_limit_mb"]) for n, s in result["services"].items())


def test_sum_within_budget_and_minimums_kept():
    result = mb.plan(SMALL, 16384)
    assert result["budget_mb"] == 12288
    assert result["sum_mb"] == sum(limits(result).values()) <= 12288
    for name, limit in limits(result).items():
        assert limit >= mb._row(name, mb._merged_table(None))["min"]
    assert not result["overcommitted"]


def test_extra_room_is_shared_by_weight_up_to_max():
    result = mb.plan(SMALL, 65536)
    got = limits(result)
    assert got["kafka"] == 4096 and got["web"] == 4096  # their table maxima
    assert got["nginx"] == 128  # weight 0: stays at its minimum
    assert got["clickhouse"] == 8192


def test_budget_is_also_bounded_by_the_reserve():
    result = mb.plan(["nginx"], 2048, ratio=0.9, reserve_mb=1024)
    assert result["budget_mb"] == int(0.95 * 2048) - 1024
    assert mb.plan(["nginx"], 2048, ratio=0.9, reserve_mb=1024, relay_threshold=1.0)["budget_mb"] == 1024


def test_minimums_that_do_not_fit_fail_with_numbers_and_options():
    with pytest.raises(mb.BudgetError) as err:
        mb.plan(SMALL, 8192)
    text = str(err.value)
    assert "need 11584 MiB" in text and "budget is 6144 MiB" in text
    assert "errors-only" in text and "more RAM (at least 15446 MiB" in text and "overcommit" in text


def test_errors_only_option_counts_profiled_services():
    services = [{"name": n, "profiles": []} for n in SMALL] + [{"name": "snuba-replays-consumer", "profiles": ["feature-complete"]}]
    with pytest.raises(mb.BudgetError, match=r"drops 1 services, 320 MiB"):
        mb.plan(services, 8192, profiles=["feature-complete"])


def test_profiles_filter_dict_services():
    services = [{"name": "web", "profiles": []}, {"name": "vroom", "profiles": ["feature-complete"]}]
    assert list(mb.plan(services, 16384, profiles=["errors-only"])["services"]) == ["web"]
    assert list(mb.plan(services, 16384, profiles=["feature-complete"])["services"]) == ["web", "vroom"]


def test_overcommit_gives_needs_and_caps_each_service_below_relays_threshold():
    result = mb.plan(SMALL, 14336, overcommit=True)
    assert result["overcommitted"] and result["sum_mb"] > result["budget_mb"]
    usual = sum(s["usual_mb"] for s in result["services"].values())
    for name, row in result["services"].items():
        assert row["mem_limit_mb"] == row["need_mb"]
        # this service at its limit, every other at its usual use, plus the OS reserve: below 95% of RAM
        assert row["mem_limit_mb"] + usual - row["usual_mb"] + 1024 <= int(0.95 * 14336)


def test_overcommit_still_fails_when_one_service_could_cross_the_threshold():
    with pytest.raises(mb.BudgetError, match="past Relay's threshold"):
        mb.plan(SMALL, 7000, overcommit=True)


def test_overrides_are_exact_and_unknown_ones_refused():
    result = mb.plan(SMALL, 32768, overrides={"relay": 3000, "nginx": 200})
    assert limits(result)["relay"] == 3000 and limits(result)["nginx"] == 200
    assert result["services"]["relay"]["source"] == "override"
    with pytest.raises(mb.BudgetError, match="worker"):
        mb.plan(SMALL, 32768, overrides={"worker": 1024})
    with pytest.raises(mb.BudgetError, match="positive integer"):
        mb.plan(SMALL, 32768, overrides={"web": "2g"})


@pytest.mark.parametrize("ratio", [0, 1, -0.5, 1.5])
def test_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(mb.BudgetError, match="ratio"):
        mb.plan(SMALL, 32768, ratio=ratio)


def test_measured_peak_raises_the_need_and_sets_usual_use():
    measured = [
        {"service": "web", "current": 1500 * MIB, "peak": 2500 * MIB},
        {"service": "web", "current": 900 * MIB, "peak": 1000 * MIB},  # a second replica: largest counts
        {"service": "nginx", "current": 10 * MIB, "peak": 20 * MIB},   # below its minimum: minimum stays
        {"service": "relay", "error": "gone"},
    ]
    result = mb.plan(SMALL, 16384, measured=measured, overcommit=True)
    web = result["services"]["web"]
    # 2500 MiB rounds up to 2560 (40 steps of 64 MiB); the need is that plus 20%.
    assert web["need_mb"] == 3072 and web["source"] == "measured" and web["usual_mb"] == 2560
    assert result["services"]["nginx"]["need_mb"] == 128
    assert result["services"]["relay"]["source"] == "table"
    assert result["measured_peaks_mb"] == {"web": 2560, "nginx": 64}


def test_a_current_use_above_the_reported_peak_counts_as_the_peak():
    result = mb.plan(SMALL, 16384, measured=[{"service": "web", "current": 2100 * MIB, "peak": 0}], overcommit=True)
    assert result["measured_peaks_mb"] == {"web": 2112}


def test_moving_use_inside_one_step_gives_the_same_plan():
    # Between two runs the containers' use moves; the plan, and so the override, must not.
    first = [{"service": "web", "current": 1200 * MIB, "peak": 2500 * MIB},
             {"service": "kafka", "current": 1300 * MIB, "peak": 1500 * MIB}]
    second = [{"service": "web", "current": 1900 * MIB, "peak": 2520 * MIB},
              {"service": "kafka", "current": 1400 * MIB, "peak": 1530 * MIB}]
    assert mb.plan(SMALL, 16384, measured=first, overcommit=True) == mb.plan(SMALL, 16384, measured=second, overcommit=True)


def test_a_remembered_peak_keeps_the_plan_after_a_restart():
    before = [{"service": "web", "current": 1200 * MIB, "peak": 2500 * MIB}]
    # After the restart the container's own peak starts again from zero; the remembered one still counts.
    after = [{"service": "web", "current": 300 * MIB, "peak": 310 * MIB}]
    first = mb.plan(SMALL, 16384, measured=before, overcommit=True)
    assert mb.plan(SMALL, 16384, measured=after, overcommit=True, remembered_peaks_mb=first["measured_peaks_mb"]) == first
    # Without the remembered peak the plan would shrink: the memory is what keeps it.
    assert mb.plan(SMALL, 16384, measured=after, overcommit=True) != first


@pytest.mark.parametrize("bad", [0, -64, "512", 1.5, True])
def test_a_remembered_peak_that_is_not_a_positive_integer_is_refused(bad):
    with pytest.raises(mb.BudgetError, match="remembered peak of web must be a positive integer"):
        mb.plan(SMALL, 16384, remembered_peaks_mb={"web": bad})


def test_kafka_heap_inside_limit_and_knobs():
    result = mb.plan(SMALL, 65536)
    kafka = result["services"]["kafka"]["mem_limit_mb"]
    heap = result["kafka_heap_mb"]
    assert heap + 1024 <= kafka
    assert result["environment"]["kafka"]["KAFKA_HEAP_OPTS"] == "-Xmx%dm -Xms%dm" % (heap, heap)
    assert result["environment"]["clickhouse"]["MAX_MEMORY_USAGE_RATIO"] == "0.8"
    assert result["redis_maxmemory_mb"] == int(result["services"]["redis"]["mem_limit_mb"] * 0.65)


def test_kafka_override_too_small_for_a_heap_is_refused():
    with pytest.raises(mb.BudgetError, match="kafka"):
        mb.plan(["kafka"], 32768, overrides={"kafka": 1100})


def test_swap_per_service_and_reservations():
    result = mb.plan(SMALL, 32768)
    for name in ("kafka", "clickhouse", "postgres", "redis"):
        row = result["services"][name]
        assert row["memswap_limit_mb"] == row["mem_limit_mb"] and not row["swap"]
    for name in ("web", "events-consumer", "snuba-errors-consumer"):
        row = result["services"][name]
        assert row["memswap_limit_mb"] == 2 * row["mem_limit_mb"] and row["swap"]
    assert result["services"]["kafka"]["mem_reservation_mb"] == 1434
    assert result["services"]["web"]["mem_reservation_mb"] is None


def test_unknown_services_get_the_default_row_and_table_rows_merge():
    result = mb.plan(["launchpad"], 4096, table={"launchpad": {"min": 700}})
    assert result["services"]["launchpad"]["need_mb"] == 700
    assert mb.plan(["launchpad"], 4096)["services"]["launchpad"]["need_mb"] == mb.DEFAULT_ROW["min"]
    with pytest.raises(mb.BudgetError, match="unknown keys"):
        mb.plan(["web"], 8192, table={"web": {"minimum": 1}})


def test_filter_wraps_errors_and_table_lines():
    with pytest.raises(AnsibleFilterError, match="memory_budget: ratio"):
        mb.memory_budget(SMALL, 16384, ratio=2)
    result = mb.plan(SMALL, 16384)
    lines = mb.memory_budget_table(result)
    assert lines[-1].startswith("sum %d MiB of a 12288 MiB budget" % result["sum_mb"])
    assert len(lines) == len(SMALL) + 2


# --- properties ---------------------------------------------------------------

NAMES = st.lists(st.sampled_from(SMALL + ["worker", "taskworker", "symbolicator", "snuba-outcomes-consumer",
                                          "ingest-monitors", "post-process-forwarder-errors", "launchpad", "smtp"]),
                 min_size=1, max_size=14, unique=True)


@settings(max_examples=300, deadline=None)
@given(NAMES, st.integers(1024, 262144), st.floats(0.3, 0.95))
def test_property_sum_within_budget(names, ram, ratio):
    try:
        result = mb.plan(names, ram, ratio=ratio)
    except mb.BudgetError as exc:
        # refused only when the minimums cannot fit, or the host is smaller than the reserve
        table = mb._merged_table(None)
        minimums = sum(mb._row(n, table)["min"] for n in names)
        assert ram <= 1024 or minimums > int(min(ratio * ram, int(0.95 * ram) - 1024)), str(exc)
        return
    assert result["sum_mb"] <= result["budget_mb"] <= ram * ratio
    for row in result["services"].values():
        assert row["mem_limit_mb"] >= row["need_mb"]
        assert row["memswap_limit_mb"] >= row["mem_limit_mb"]
        assert row["mem_reservation_mb"] is None or row["mem_reservation_mb"] <= row["mem_limit_mb"]


@settings(max_examples=200, deadline=None)
@given(NAMES, st.integers(4096, 131072), st.integers(0, 65536))
def test_property_limits_grow_with_ram(names, ram, more):
    try:
        small = mb.plan(names, ram)
    except mb.BudgetError:
        return
    large = mb.plan(names, ram + more)
    for name in names:
        assert large["services"][name]["mem_limit_mb"] >= small["services"][name]["mem_limit_mb"]


@settings(max_examples=200, deadline=None)
@given(NAMES, st.integers(16384, 262144), st.data())
def test_property_overrides_exact(names, ram, data):
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    overrides = dict((n, data.draw(st.integers(1100, 3000))) for n in chosen)
    try:
        result = mb.plan(names, ram, overrides=overrides)
    except mb.BudgetError:
        return
    for name, value in overrides.items():
        assert result["services"][name]["mem_limit_mb"] == value
    assert result["sum_mb"] <= result["budget_mb"]


@settings(max_examples=300, deadline=None)
@given(NAMES, st.integers(2048, 131072), st.booleans(), st.data())
def test_property_no_service_can_eat_the_headroom(names, ram, overcommit, data):
    measured = [{"service": n, "current": data.draw(st.integers(1, 4096)) * MIB, "peak": data.draw(st.integers(1, 6144)) * MIB}
                for n in data.draw(st.lists(st.sampled_from(names), unique=True))]
    try:
        result = mb.plan(names, ram, measured=measured, overcommit=overcommit)
    except mb.BudgetError:
        return
    usual = sum(row["usual_mb"] for row in result["services"].values())
    for row in result["services"].values():
        assert row["mem_limit_mb"] + usual - row["usual_mb"] + 1024 <= int(0.95 * ram)
        assert row["mem_limit_mb"] >= row["need_mb"]
    if not overcommit:
        assert result["sum_mb"] <= result["budget_mb"]


@settings(max_examples=200, deadline=None)
@given(NAMES, st.integers(8192, 131072), st.booleans(), st.data())
def test_property_use_moving_inside_its_step_keeps_the_plan(names, ram, overcommit, data):
    # Two runs see each container at another point of the same 64 MiB step of
    # its peak, and at any current use up to it: the same plan, so a re-run
    # rewrites nothing and recreates nothing.
    steps = dict((n, data.draw(st.integers(1, 96))) for n in data.draw(st.lists(st.sampled_from(names), unique=True)))

    def seen():
        runs = []
        for name, step in steps.items():
            peak = data.draw(st.integers((step - 1) * 64 * MIB + 1, step * 64 * MIB))
            runs.append({"service": name, "peak": peak, "current": data.draw(st.integers(0, peak))})
        return runs

    try:
        first = mb.plan(names, ram, measured=seen(), overcommit=overcommit)
    except mb.BudgetError:
        return
    assert mb.plan(names, ram, measured=seen(), overcommit=overcommit) == first
