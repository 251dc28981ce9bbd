# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory_budget filter: real releases at upstream's sizes, the single-fault rule, refusals, measured sizing, knobs."""

import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb

from checkouts import FIXTURE, FIXTURE_24, service_profiles as checkout_services, upstream as upstream_dir, upstream_releases

SMALL = ["kafka", "clickhouse", "postgres", "redis", "web", "relay", "nginx", "snuba-api",
         "snuba-errors-consumer", "events-consumer"]
MIB = 1024 * 1024


RELEASES = [upstream_dir(tag) for tag in upstream_releases()]
OWN = [FIXTURE, FIXTURE_24]
CHECKOUTS = [pytest.param(path, id=os.path.basename(path)) for path in OWN] + [
    pytest.param(path, id="upstream-" + os.path.basename(path)) for path in RELEASES]
upstream = pytest.mark.skipif(not RELEASES, reason="../shared/upstream is not beside this checkout")


def limits(result):
    return dict((n, s["mem_limit_mb"]) for n, s in result["services"].items())


def assert_single_fault_rule(result):
    """Each service at its limit, every other at its usual figure, plus the OS reserve: below Relay's threshold."""
    usual = sum(s["usual_mb"] for s in result["services"].values())
    assert usual == result["usual_sum_mb"]
    for name, row in result["services"].items():
        worst = row["mem_limit_mb"] + usual - row["usual_mb"] + result["reserve_mb"]
        assert worst <= int(result["relay_threshold"] * result["total_memory_mb"]), name
        assert row["floor_mb"] <= row["mem_limit_mb"], name
        assert row["mem_reservation_mb"] == row["usual_mb"] <= row["mem_limit_mb"], name
        assert row["memswap_limit_mb"] in (row["mem_limit_mb"], 2 * row["mem_limit_mb"])


# --- real checkouts at upstream's supported sizes ------------------------------

@pytest.mark.parametrize("path", CHECKOUTS)
@pytest.mark.parametrize("profile, ram", [("feature-complete", 16384), ("errors-only", 8192)])
def test_a_real_checkout_is_sized_with_the_defaults_at_upstreams_sizes(path, profile, ram):
    services = checkout_services(path)
    result = mb.plan(services, ram, profiles=[profile])
    assert result["fits"], result["refusal"]
    expected = [s["name"] for s in services if not s["profiles"] or profile in s["profiles"]]
    assert sorted(result["services"]) == sorted(expected)
    assert_single_fault_rule(result)
    if profile == "feature-complete" and len(expected) > 50:
        # 57-74 services: the limits add up to more than RAM, and the plan says so.
        assert result["overcommitted"] and result["sum_mb"] > ram


@upstream
@pytest.mark.parametrize("path", RELEASES, ids=os.path.basename)
def test_no_service_of_a_real_release_falls_to_the_default_row(path):
    table = mb._merged_table(None)
    assert [s["name"] for s in checkout_services(path) if mb._row(s["name"], table) is mb.DEFAULT_ROW] == []


@upstream
@pytest.mark.parametrize("path", RELEASES, ids=os.path.basename)
def test_a_larger_host_gets_larger_limits(path):
    services = checkout_services(path)
    small, large = mb.plan(services, 16384, profiles=["feature-complete"]), mb.plan(services, 32768, profiles=["feature-complete"])
    assert all(large["services"][n]["mem_limit_mb"] >= small["services"][n]["mem_limit_mb"] for n in small["services"])
    for name in ("web", "relay", "kafka", "clickhouse", "postgres"):
        assert large["services"][name]["mem_limit_mb"] > small["services"][name]["mem_limit_mb"], name
    assert_single_fault_rule(large)


@upstream
@pytest.mark.parametrize("path", RELEASES, ids=os.path.basename)
def test_feature_complete_on_8_gib_is_refused_with_options_that_fit(path):
    services = checkout_services(path)
    result = mb.plan(services, 8192, profiles=["feature-complete"])
    assert not result["fits"] and "services" not in result
    text = result["refusal"]
    assert text.count(". ") == 1 and text.endswith(".")  # one sentence, then the options
    assert "add up to %d MiB" % result["usual_sum_mb"] in text and "8192 MiB RAM" in text
    assert "errors-only profile" in text
    assert mb.plan(services, 8192, profiles=["errors-only"])["fits"]
    # The RAM it names is enough, and never below what upstream's installer demands (14000 MB).
    ram = result["ram_that_fits_gib"]
    assert "%d GiB of RAM or more" % ram in text and ram >= 14
    assert mb.plan(services, ram * 1024, profiles=["feature-complete"])["fits"]
    assert ram == 14 or not mb.plan(services, (ram - 1) * 1024, profiles=["feature-complete"])["fits"]


@pytest.mark.parametrize("path", CHECKOUTS)
def test_the_plan_and_the_refusal_do_not_depend_on_the_order_of_the_services(path):
    services = checkout_services(path)
    shuffled = list(services)
    random.Random(7).shuffle(shuffled)
    for ram in (4096, 8192, 16384):
        assert mb.plan(shuffled, ram) == mb.plan(services, ram)
    assert list(mb.plan(shuffled, 16384)["services"]) == sorted(s["name"] for s in services)


def test_the_errors_only_option_is_offered_only_when_it_fits():
    services = [{"name": n, "profiles": []} for n in SMALL] + [{"name": "vroom", "profiles": ["feature-complete"]}]
    text = mb.plan(services, 4096)["refusal"]
    assert "errors-only" not in text and "GiB of RAM or more" in text


def test_relay_keeps_its_post_burst_use_below_its_own_threshold():
    for threshold in (0.95, 0.9, 0.8):
        relay = mb.plan(SMALL, 16384, relay_threshold=threshold)["services"]["relay"]
        assert relay["mem_limit_mb"] * threshold >= mb.RELAY_POST_BURST_MB * mb.RELAY_MARGIN


def test_a_taskworker_with_more_workers_gets_more():
    four = mb.plan([{"name": "taskworker", "workers": 4}, "web"], 16384)["services"]["taskworker"]
    eight = mb.plan([{"name": "taskworker", "workers": 8}, "web"], 16384)["services"]["taskworker"]
    assert eight["usual_mb"] == four["usual_mb"] + 4 * 64 and eight["floor_mb"] == four["floor_mb"] + 4 * 64
    with pytest.raises(mb.BudgetError, match="workers of taskworker must be a positive integer"):
        mb.plan([{"name": "taskworker", "workers": "four"}], 16384)


# --- strict mode ---------------------------------------------------------------

def test_strict_mode_holds_the_sum_to_the_ratio():
    result = mb.plan(SMALL, 32768, strict=True)
    assert result["fits"] and result["budget_mb"] == 24576
    assert result["sum_mb"] <= result["budget_mb"] and not result["overcommitted"]
    assert_single_fault_rule(result)


@upstream
def test_strict_mode_refuses_a_real_stack_and_names_the_default_sizing():
    services = checkout_services(upstream_dir("24.8.0"))
    result = mb.plan(services, 16384, strict=True, profiles=["feature-complete"])
    assert not result["fits"]
    assert "In strict mode" in result["refusal"] and "compose_limits_strict: false" in result["refusal"]
    assert mb.plan(services, result["ram_that_fits_gib"] * 1024, strict=True, profiles=["feature-complete"])["fits"]


@pytest.mark.parametrize("ratio", [0, 1, -0.5, 1.5])
def test_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(mb.BudgetError, match="ratio"):
        mb.plan(SMALL, 32768, ratio=ratio)


# --- overrides, table rows, bad input --------------------------------------------

def test_overrides_are_exact_and_unknown_ones_refused():
    result = mb.plan(SMALL, 32768, overrides={"relay": 3000, "nginx": 200})
    assert limits(result)["relay"] == 3000 and limits(result)["nginx"] == 200
    assert result["services"]["relay"]["source"] == "override"
    with pytest.raises(mb.BudgetError, match="worker"):
        mb.plan(SMALL, 32768, overrides={"worker": 1024})
    with pytest.raises(mb.BudgetError, match="positive integer"):
        mb.plan(SMALL, 32768, overrides={"web": "2g"})


def test_an_override_that_breaks_the_rule_is_refused_as_a_plan():
    result = mb.plan(SMALL, 16384, overrides={"web": 15000})
    assert not result["fits"] and "web needs" in result["refusal"]


@pytest.mark.parametrize("row, message", [
    ({"web": {"minimum": 1}}, "unknown keys"),
    ({"web": {"typical": 100}}, "typical is now usual"),
    ({"web": {"min": "1g"}}, "min must be an integer"),
    ({"web": {"swap": "yes"}}, "swap must be true or false"),
    ({"web": {"min": 5000}}, "0 < min <= max"),
    ({"web": 512}, "must be a dict"),
])
def test_bad_table_rows_are_refused(row, message):
    with pytest.raises(mb.BudgetError, match=message):
        mb.plan(SMALL, 16384, table=row)


def test_unknown_services_get_the_default_row_and_table_rows_merge():
    result = mb.plan(["sidecar"], 4096, table={"sidecar": {"min": 700}})
    assert result["services"]["sidecar"]["floor_mb"] == 700
    assert mb.plan(["sidecar"], 4096)["services"]["sidecar"]["floor_mb"] == mb.DEFAULT_ROW["min"]


def test_profiles_filter_dict_services():
    services = [{"name": "web", "profiles": []}, {"name": "vroom", "profiles": ["feature-complete"]}]
    assert list(mb.plan(services, 16384, profiles=["errors-only"])["services"]) == ["web"]
    assert list(mb.plan(services, 16384, profiles=["feature-complete"])["services"]) == ["vroom", "web"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(total_memory_mb="lots"), "must be integers"),
    (dict(total_memory_mb=512, reserve_mb=512), "larger than reserve_mb"),
    (dict(relay_threshold=0.2), "relay_threshold"),
    (dict(measured="web"), "measured must be a list"),
])
def test_bad_arguments_are_refused(kwargs, message):
    args = dict(dict(total_memory_mb=16384), **kwargs)
    with pytest.raises(mb.BudgetError, match=message):
        mb.plan(SMALL, **args)


def test_filter_wraps_errors_and_table_lines():
    with pytest.raises(AnsibleFilterError, match="memory_budget: ratio"):
        mb.memory_budget(SMALL, 16384, ratio=2)
    result = mb.plan(SMALL, 16384)
    lines = mb.memory_budget_table(result)
    assert len(lines) == len(SMALL) + 3
    assert lines[-2].startswith("usual use %d MiB of %d MiB below Relay's threshold" % (result["usual_sum_mb"], result["threshold_mb"]))
    assert lines[-1].startswith("limits add up to %d MiB" % result["sum_mb"])
    assert mb.memory_budget_table(mb.plan(SMALL, 4096)) == [mb.plan(SMALL, 4096)["refusal"]]


# --- measured sizing -------------------------------------------------------------

def test_measured_peak_raises_the_floor_and_sets_usual_use():
    measured = [
        {"service": "web", "current": 1500 * MIB, "peak": 2500 * MIB},
        {"service": "web", "current": 900 * MIB, "peak": 1000 * MIB},  # a second replica: largest counts
        {"service": "nginx", "current": 10 * MIB, "peak": 20 * MIB},   # below its minimum: minimum stays
        {"service": "relay", "error": "gone"},
    ]
    result = mb.plan(SMALL, 16384, measured=measured)
    web = result["services"]["web"]
    # 2500 MiB rounds up to 2560 (40 steps of 64 MiB); the floor is that plus 20%.
    assert web["floor_mb"] == 3072 and web["source"] == "measured" and web["usual_mb"] == 2560
    assert result["services"]["nginx"]["floor_mb"] == 128 and result["services"]["nginx"]["usual_mb"] == 64
    assert result["services"]["relay"]["source"] == "table"
    assert result["measured_peaks_mb"] == {"web": 2560, "nginx": 64}
    assert_single_fault_rule(result)


def test_a_service_far_above_its_row_is_a_suspected_leak_that_lifts_nothing():
    # ingest-replay-recordings reported at 9.3 GB after 21 days (self-hosted #4294).
    measured = [{"service": "ingest-replay-recordings", "current": 9300 * MIB, "peak": 9300 * MIB},
                {"service": "web", "current": 1200 * MIB, "peak": 1300 * MIB}]
    names = SMALL + ["ingest-replay-recordings"]
    result = mb.plan(names, 16384, measured=measured)
    leak = result["services"]["ingest-replay-recordings"]
    table = mb.plan(names, 16384)["services"]["ingest-replay-recordings"]
    assert result["suspected_leaks"] == ["ingest-replay-recordings"] and leak["suspected_leak_mb"] == 9344
    assert leak["source"] == "table" and leak["usual_mb"] == table["usual_mb"] and leak["floor_mb"] == table["floor_mb"]
    assert "ingest-replay-recordings" not in result["measured_peaks_mb"] and "web" in result["measured_peaks_mb"]
    assert_single_fault_rule(result)
    assert any("suspected leak: measured 9344 MiB" in line for line in mb.memory_budget_table(result))


def test_measured_use_that_does_not_fit_is_refused_with_the_forget_option():
    measured = [{"service": n, "current": 1000 * MIB, "peak": 1000 * MIB} for n in SMALL]
    result = mb.plan(SMALL, 8192, measured=measured)
    assert not result["fits"] and "compose_limits_forget_peaks" in result["refusal"]


def test_moving_use_inside_one_step_gives_the_same_plan():
    first = [{"service": "web", "current": 1200 * MIB, "peak": 2500 * MIB},
             {"service": "kafka", "current": 1300 * MIB, "peak": 1500 * MIB}]
    second = [{"service": "web", "current": 1900 * MIB, "peak": 2520 * MIB},
              {"service": "kafka", "current": 1400 * MIB, "peak": 1530 * MIB}]
    assert mb.plan(SMALL, 16384, measured=first) == mb.plan(SMALL, 16384, measured=second)


def test_a_remembered_peak_keeps_the_plan_after_a_restart():
    before = [{"service": "web", "current": 1200 * MIB, "peak": 2500 * MIB}]
    after = [{"service": "web", "current": 300 * MIB, "peak": 310 * MIB}]
    first = mb.plan(SMALL, 16384, measured=before)
    assert mb.plan(SMALL, 16384, measured=after, remembered_peaks_mb=first["measured_peaks_mb"]) == first
    assert mb.plan(SMALL, 16384, measured=after) != first


@pytest.mark.parametrize("bad", [0, -64, "512", 1.5, True])
def test_a_remembered_peak_that_is_not_a_positive_integer_is_refused(bad):
    with pytest.raises(mb.BudgetError, match="remembered peak of web must be a positive integer"):
        mb.plan(SMALL, 16384, remembered_peaks_mb={"web": bad})


# --- knobs -----------------------------------------------------------------------

def test_kafka_heap_inside_limit_and_knobs():
    for ram in (8192, 16384, 65536):
        result = mb.plan(SMALL, ram)
        kafka, heap = result["services"]["kafka"]["mem_limit_mb"], result["kafka_heap_mb"]
        assert heap >= 1024 and heap + mb.KAFKA_OFF_HEAP_MB <= kafka
        assert result["environment"]["kafka"]["KAFKA_HEAP_OPTS"] == "-Xmx%dm -Xms%dm" % (heap, heap)
        assert result["environment"]["clickhouse"]["MAX_MEMORY_USAGE_RATIO"] == "0.8"
        assert result["redis_maxmemory_mb"] == int(result["services"]["redis"]["mem_limit_mb"] * 0.65)


def test_kafka_override_too_small_for_a_heap_is_refused():
    with pytest.raises(mb.BudgetError, match="kafka"):
        mb.plan(["kafka"], 32768, overrides={"kafka": 1100})


def test_swap_per_service():
    result = mb.plan(SMALL, 32768)
    for name in ("kafka", "clickhouse", "postgres", "redis"):
        row = result["services"][name]
        assert row["memswap_limit_mb"] == row["mem_limit_mb"] and not row["swap"]
    for name in ("web", "events-consumer", "snuba-errors-consumer", "relay"):
        row = result["services"][name]
        assert row["memswap_limit_mb"] == 2 * row["mem_limit_mb"] and row["swap"]


# --- properties --------------------------------------------------------------------

NAMES = st.lists(st.sampled_from(SMALL + ["worker", "taskworker", "symbolicator", "snuba-outcomes-consumer",
                                          "ingest-monitors", "post-process-forwarder-errors", "sidecar", "smtp",
                                          "attachments-consumer", "sentry-cleanup"]),
                 min_size=1, max_size=16, unique=True)


@settings(max_examples=300, deadline=None)
@given(NAMES, st.integers(1024, 262144), st.booleans(), st.data())
def test_property_the_rule_holds_or_the_plan_is_refused(names, ram, strict, data):
    measured = [{"service": n, "current": data.draw(st.integers(1, 4096)) * MIB, "peak": data.draw(st.integers(1, 12288)) * MIB}
                for n in data.draw(st.lists(st.sampled_from(names), unique=True))]
    try:
        result = mb.plan(names, ram, measured=measured, strict=strict)
    except mb.BudgetError as exc:
        assert ram <= 512 or "kafka" in str(exc), str(exc)
        return
    if not result["fits"]:
        assert result["ram_that_fits_gib"] * 1024 > ram
        assert mb.plan(names, result["ram_that_fits_gib"] * 1024, measured=measured, strict=strict)["fits"]
        return
    assert_single_fault_rule(result)
    if strict:
        assert result["sum_mb"] <= result["budget_mb"] <= ram * 0.75


@settings(max_examples=200, deadline=None)
@given(NAMES, st.integers(4096, 131072), st.integers(0, 65536), st.booleans())
def test_property_limits_grow_with_ram(names, ram, more, strict):
    small = mb.plan(names, ram, strict=strict)
    if not small["fits"]:
        return
    large = mb.plan(names, ram + more, strict=strict)
    assert large["fits"]
    for name in names:
        assert large["services"][name]["mem_limit_mb"] >= small["services"][name]["mem_limit_mb"]


@settings(max_examples=200, deadline=None)
@given(NAMES, st.integers(8192, 131072), st.data())
def test_property_use_moving_inside_its_step_keeps_the_plan(names, ram, data):
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

    assert mb.plan(names, ram, measured=seen()) == mb.plan(names, ram, measured=seen())
