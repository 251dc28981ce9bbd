# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory limits for every service of a self-hosted Sentry checkout, held to a budget of RAM.

Pure computation: no I/O. The compose_limits role feeds it the services of the
checkout, the host's RAM and (when the host has them) the measured figures of
the running containers, and writes what it returns into the compose override.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: memory_budget
short_description: Plan a memory limit for every service of a self-hosted Sentry checkout
version_added: 0.1.0
author: sentry_selfhosted.memory maintainers (@sentry-selfhosted)
description:
  - Gives every service a memory limit at or above what it needs, and shares
    the rest of a budget of RAM by weight, so that the sum of the limits stays
    within O(ratio) of RAM, and below Relay's threshold once O(reserve_mb)
    is left to the OS and Docker.
  - What a service needs is its measured peak plus 20% where O(measured) has
    it, else the minimum of its row in the table. A measured need is never cut
    down to fit; when the needs do not fit the budget the filter fails, with
    the numbers and the options (the errors-only profile, more RAM, or
    O(overcommit)), instead of planning limits that OOM-kill a healthy stack.
  - Measured peaks are rounded up to 64 MiB, and a measured service's usual
    use is its rounded peak, not its current use, so that the plan (and the
    reservations written from it) stays the same from one run to the next
    while the containers' use moves; it changes when a peak grows past a
    64 MiB step.
  - Whatever the mode, no single service may reach its limit while the others
    sit at their usual use (for a measured service, its peak) and push the host
    past Relay's threshold (O(relay_threshold)); a plan that cannot keep this
    fails.
  - Also returns the knobs that must follow the limits, C(KAFKA_HEAP_OPTS)
    (C(-Xms) = C(-Xmx), 1 GiB off-heap kept inside the limit), ClickHouse's
    C(MAX_MEMORY_USAGE_RATIO) (ClickHouse reads its cgroup limit, so 0.8 of
    its own limit) and Redis' C(maxmemory) (65% of its limit, BGSAVE's
    copy-on-write counts against the cgroup).
  - "Default table (MiB; min = lowest limit, typical = usual use, max = where
    growth by weight stops). Figures from footprints reported on healthy
    16 GB hosts in getsentry/self-hosted issues #2539, #3053 and #3330
    (kafka about 1.4 GiB, web about 1.1 GiB, relay up to 1.5 GiB, snuba
    consumers 180-330 MiB, sentry consumers 70-400 MiB); web and snuba-api
    minimums cover the migrations that C(install.sh) runs in one-off
    containers, which inherit the override."
options:
  _input:
    description:
      - The services. Names, or dicts with C(name) and C(profiles) (a list;
        empty for services that are always on).
    type: list
    elements: raw
    required: true
  total_memory_mb:
    description: The host's RAM in MiB.
    type: int
    required: true
  ratio:
    description: Share of RAM the sum of the limits may reach, in (0, 1).
    type: float
    default: 0.75
  reserve_mb:
    description: RAM kept for the OS, dockerd and the containerd shims; the budget is at most O(relay_threshold) * RAM less this.
    type: int
    default: 1024
  profiles:
    description:
      - Active compose profiles. When given, dict services whose C(profiles)
        name none of them are left out. Names are always kept.
    type: list
    elements: str
  table:
    description:
      - Rows merged over the default table, by service name or shell pattern
        (C(snuba-*)). Keys C(min), C(typical), C(max) (MiB), C(weight),
        C(swap) (bool), C(reserve) (bool, sets C(mem_reservation)).
    type: dict
  overrides:
    description: Exact limits in MiB for some services; honoured as given.
    type: dict
  measured:
    description:
      - The C(containers) list of M(sentry_selfhosted.memory.memory_info),
        dicts with C(service), C(current) and C(peak) in bytes. Several
        containers of a service count by their largest figures.
    type: list
    elements: dict
  remembered_peaks_mb:
    description:
      - Peaks in MiB per service remembered from earlier runs (the
        C(measured_peaks_mb) of an earlier plan). A restart starts a
        container's peak again from zero; a remembered peak still counts, as
        if measured, so that the plan does not shrink after every restart.
      - The role P(sentry_selfhosted.memory.compose_limits#role) keeps them in a file.
    type: dict
  overcommit:
    description:
      - Allow the sum of the limits to exceed the budget when the needs do not
        fit it. Each service then gets what it needs, still capped so that it
        alone cannot push the host past Relay's threshold.
    type: bool
    default: false
  relay_threshold:
    description: Relay's C(health.max_memory_percent), as a fraction.
    type: float
    default: 0.95
"""

EXAMPLES = r"""
- name: Plan limits for the services of the checkout on a 16 GiB host
  ansible.builtin.set_fact:
    plan: "{{ ['kafka', 'clickhouse', 'postgres', 'redis', 'web', 'relay', 'nginx']
              | sentry_selfhosted.memory.memory_budget(total_memory_mb=16384, overrides={'relay': 3072}) }}"

- name: Size from what the containers use now
  ansible.builtin.set_fact:
    plan: "{{ services | sentry_selfhosted.memory.memory_budget(total_memory_mb=ram_mb, measured=memory.containers) }}"
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    total_memory_mb: {description: RAM the plan is for., type: int}
    budget_mb: {description: "min(ratio * RAM, relay_threshold * RAM - reserve).", type: int}
    sum_mb: {description: Sum of the limits., type: int}
    overcommitted: {description: Whether the sum exceeds the budget (only with O(overcommit))., type: bool}
    headroom_cap_mb:
      description: Relay's threshold less the reserve, in MiB; no service's limit plus the others' usual use exceeds it.
      type: int
    services:
      description: Per service, C(mem_limit_mb), C(memswap_limit_mb), C(mem_reservation_mb) (or null), C(swap), C(need_mb),
        C(usual_mb), C(source) (override, measured or table) and C(share) (limit / RAM).
      type: dict
    measured_peaks_mb:
      description: Per measured service, its peak rounded up to 64 MiB, the figure the plan used.
      type: dict
    environment:
      description: Per service, environment variables that must follow the limit (KAFKA_HEAP_OPTS, MAX_MEMORY_USAGE_RATIO).
      type: dict
    redis_maxmemory_mb: {description: C(maxmemory) for the C(redis) service, or null without one., type: int}
    kafka_heap_mb: {description: Kafka's heap, or null without a C(kafka) service., type: int}
"""

import fnmatch
import math

from ansible.errors import AnsibleFilterError

# name or pattern: (min, typical, max, weight, swap, reserve), MiB. First match wins; see DOCUMENTATION.
DEFAULT_TABLE = [
    ("kafka", dict(min=2048, typical=1434, max=4096, weight=3, swap=False, reserve=True)),
    ("clickhouse", dict(min=2048, typical=1024, max=8192, weight=4, swap=False, reserve=True)),
    ("postgres", dict(min=1024, typical=300, max=4096, weight=2, swap=False, reserve=True)),
    ("redis", dict(min=512, typical=150, max=2048, weight=1, swap=False, reserve=True)),
    ("relay", dict(min=2048, typical=1024, max=6144, weight=4, swap=True, reserve=True)),
    ("web", dict(min=2048, typical=1126, max=4096, weight=3, swap=True, reserve=False)),
    ("snuba-api", dict(min=1024, typical=300, max=2048, weight=1, swap=True, reserve=False)),
    ("symbolicator", dict(min=1024, typical=300, max=4096, weight=2, swap=True, reserve=False)),
    ("worker", dict(min=1024, typical=500, max=2048, weight=1, swap=True, reserve=False)),
    ("taskworker", dict(min=1024, typical=500, max=2048, weight=1, swap=True, reserve=False)),
    ("sentry-cleanup", dict(min=1024, typical=300, max=2048, weight=0, swap=True, reserve=False)),
    ("taskbroker", dict(min=512, typical=200, max=2048, weight=1, swap=True, reserve=False)),
    ("seaweedfs", dict(min=512, typical=100, max=2048, weight=1, swap=True, reserve=False)),
    ("zookeeper", dict(min=512, typical=300, max=1024, weight=0, swap=False, reserve=False)),
    ("memcached", dict(min=128, typical=64, max=512, weight=0, swap=True, reserve=False)),
    ("pgbouncer", dict(min=64, typical=16, max=256, weight=0, swap=True, reserve=False)),
    ("nginx", dict(min=128, typical=32, max=256, weight=0, swap=True, reserve=False)),
    ("smtp", dict(min=64, typical=16, max=128, weight=0, swap=True, reserve=False)),
    ("geoipupdate", dict(min=128, typical=32, max=256, weight=0, swap=True, reserve=False)),
    ("*-cleanup", dict(min=256, typical=64, max=512, weight=0, swap=True, reserve=False)),
    ("snuba-*", dict(min=320, typical=150, max=1024, weight=1, swap=True, reserve=False)),
    ("*consumer*", dict(min=384, typical=120, max=1024, weight=1, swap=True, reserve=False)),
    ("ingest-*", dict(min=384, typical=120, max=1024, weight=1, swap=True, reserve=False)),
    ("post-process-forwarder-*", dict(min=384, typical=120, max=1024, weight=1, swap=True, reserve=False)),
]
# Services the table does not know: a small Python process.
DEFAULT_ROW = dict(min=320, typical=120, max=1024, weight=1, swap=True, reserve=False)

KAFKA_OFF_HEAP_MB = 1024
KAFKA_MIN_HEAP_MB = 256
CLICKHOUSE_RATIO = 0.8
REDIS_MAXMEMORY_SHARE = 0.65
MEASURED_MARGIN = 1.2
# Peaks move a little on every run; planning from 64 MiB steps keeps a re-run's plan the same.
MEASURED_STEP_MB = 64
MIB = 1024 * 1024


class BudgetError(ValueError):
    """The plan cannot be made; the message names the numbers."""


def _row(name, table):
    for pattern, row in table:
        if pattern == name:
            return row
    for pattern, row in table:
        if fnmatch.fnmatchcase(name, pattern):
            return row
    return DEFAULT_ROW


def _merged_table(extra):
    table = [(pattern, dict(row)) for pattern, row in DEFAULT_TABLE]
    for pattern, changes in (extra or {}).items():
        if not isinstance(changes, dict):
            raise BudgetError("table row %r must be a dict, not %r" % (pattern, changes))
        unknown = set(changes) - set(DEFAULT_ROW)
        if unknown:
            raise BudgetError("table row %r has unknown keys %s (known: %s)" % (pattern, sorted(unknown), sorted(DEFAULT_ROW)))
        for known_pattern, row in table:
            if known_pattern == pattern:
                row.update(changes)
                break
        else:
            row = dict(DEFAULT_ROW)
            row.update(changes)
            table.insert(0, (pattern, row))
    for pattern, row in table:
        if not 0 < row["min"] <= row["max"] or row["weight"] < 0 or row["typical"] < 0:
            raise BudgetError("table row %r needs 0 < min <= max, weight >= 0, typical >= 0: %r" % (pattern, row))
    return table


def _service_names(services, profiles):
    names = []
    for item in services or []:
        if isinstance(item, dict):
            name, own = item.get("name"), item.get("profiles") or []
            if profiles is not None and own and not set(own) & set(profiles):
                continue
        else:
            name = item
        if not isinstance(name, str) or not name:
            raise BudgetError("a service must be a name or a dict with a name: %r" % (item,))
        if name not in names:
            names.append(name)
    if not names:
        raise BudgetError("no services to plan for")
    return names


def _measured_peaks(measured):
    """Largest peak (or current use, where larger) per service, in MiB rounded up to MEASURED_STEP_MB."""
    found = {}
    for container in measured or []:
        service = container.get("service")
        if not service or container.get("error"):
            continue
        peak = max(container.get("peak") or 0, container.get("current") or 0)
        if not peak:
            continue
        steps = int(math.ceil(peak / float(MEASURED_STEP_MB * MIB)))
        found[service] = max(found.get(service, 0), steps * MEASURED_STEP_MB)
    return found


def _water_fill(remaining, rooms, weights):
    """Share ``remaining`` by weight, none beyond its room; non-decreasing in ``remaining``."""
    extra = dict((name, 0.0) for name in rooms)
    active = [n for n in rooms if rooms[n] > 0 and weights[n] > 0]
    while active and remaining > 1e-9:
        total_weight = float(sum(weights[n] for n in active))
        full = [n for n in active if remaining * weights[n] / total_weight >= rooms[n] - extra[n]]
        if not full:
            for n in active:
                extra[n] += remaining * weights[n] / total_weight
            break
        for n in full:
            remaining -= rooms[n] - extra[n]
            extra[n] = rooms[n]
        active = [n for n in active if n not in full]
    return extra


def _not_fitting(names, needs, budget, total, ratio, reserve, threshold, profiles_of):
    biggest = sorted(names, key=lambda n: -needs[n])[:6]
    need_sum = sum(needs.values())
    ram_needed = int(math.ceil(max(need_sum / ratio, (need_sum + reserve) / threshold)))
    text = ("The %d services need %d MiB of limits (largest: %s) but the budget is %d MiB "
            "(%d%% of %d MiB RAM, %d MiB kept for the OS). Options: "
            % (len(names), need_sum, ", ".join("%s %d" % (n, needs[n]) for n in biggest), budget, round(ratio * 100), total, reserve))
    options = []
    optional = [n for n in names if profiles_of.get(n)]
    if optional:
        options.append("the errors-only profile (COMPOSE_PROFILES=errors-only drops %d services, %d MiB)"
                       % (len(optional), sum(needs[n] for n in optional)))
    else:
        options.append("the errors-only profile (COMPOSE_PROFILES=errors-only, fewer services)")
    options.append("more RAM (at least %d MiB at this ratio)" % ram_needed)
    options.append("allow overcommit (compose_limits_overcommit: true; each service is still capped so that it alone "
                   "cannot push the host past Relay's threshold)")
    return text + "; ".join(options) + "."


def plan(services, total_memory_mb, ratio=0.75, reserve_mb=1024, profiles=None, table=None, overrides=None,
         measured=None, overcommit=False, relay_threshold=0.95, remembered_peaks_mb=None):
    """The plan described in DOCUMENTATION; raises BudgetError."""
    try:
        total = int(total_memory_mb)
        reserve = int(reserve_mb)
        ratio = float(ratio)
        relay_threshold = float(relay_threshold)
    except (TypeError, ValueError):
        raise BudgetError("total_memory_mb and reserve_mb must be integers, ratio and relay_threshold numbers")
    if not 0 < ratio < 1:
        raise BudgetError("ratio must be in (0, 1), not %s" % ratio)
    if not 0 < relay_threshold <= 1:
        raise BudgetError("relay_threshold must be in (0, 1], not %s" % relay_threshold)
    if total <= 0 or reserve < 0 or reserve >= total:
        raise BudgetError("total_memory_mb (%s) must be positive and larger than reserve_mb (%s)" % (total, reserve))
    names = _service_names(services, profiles)
    profiles_of = dict((s["name"], s.get("profiles") or []) for s in services or [] if isinstance(s, dict))
    rows = _merged_table(table)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise BudgetError("overrides name services the checkout does not run: %s (services: %s)" % (", ".join(unknown), ", ".join(names)))
    for name, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise BudgetError("override for %s must be a positive integer of MiB, not %r" % (name, value))
    if not isinstance(remembered_peaks_mb or {}, dict):
        raise BudgetError("remembered_peaks_mb must be a mapping of service to MiB, not %r" % (remembered_peaks_mb,))
    remembered = dict(remembered_peaks_mb or {})
    for name, value in remembered.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise BudgetError("remembered peak of %s must be a positive integer of MiB, not %r" % (name, value))
    seen = _measured_peaks(list(measured or []) + [{"service": name, "peak": value * MIB} for name, value in remembered.items()])

    cap_total = int(relay_threshold * total) - reserve
    # Never more than what keeps the host below Relay's threshold with the OS reserve in use.
    budget = int(min(ratio * total, cap_total))
    row_of = dict((n, _row(n, rows)) for n in names)
    needs, uses, sources = {}, {}, {}
    for name in names:
        row = row_of[name]
        if name in overrides:
            needs[name] = overrides[name]
            sources[name] = "override"
        elif name in seen:
            needs[name] = max(row["min"], int(math.ceil(seen[name] * MEASURED_MARGIN)))
            sources[name] = "measured"
        else:
            needs[name] = row["min"]
            sources[name] = "table"
        uses[name] = min(needs[name], seen.get(name, row["typical"]))

    free = [n for n in names if n not in overrides]
    need_sum = sum(needs.values())
    if need_sum <= budget:
        rooms = dict((n, max(row_of[n]["max"], needs[n]) - needs[n]) for n in free)
        extra = _water_fill(budget - need_sum, rooms, dict((n, row_of[n]["weight"]) for n in free))
    elif overcommit:
        extra = dict((n, 0.0) for n in free)
    else:
        raise BudgetError(_not_fitting(names, needs, budget, total, ratio, reserve, relay_threshold, profiles_of))

    use_sum = sum(uses.values())
    limits = {}
    for name in names:
        # What this service may reach while every other one sits at its usual use.
        cap = cap_total - (use_sum - uses[name])
        wanted = needs[name] + int(math.floor(extra.get(name, 0.0)))
        if needs[name] > cap:
            raise BudgetError(
                "%s needs %d MiB (%s) but may have at most %d MiB: with the other services at their usual %d MiB (measured ones at their peaks) and %d MiB "
                "for the OS, more would push the host past Relay's threshold (%d%% of %d MiB). Options: the errors-only profile, "
                "more RAM, smaller overrides, or a higher relay threshold."
                % (name, needs[name], sources[name], cap, use_sum - uses[name], reserve, round(relay_threshold * 100), total))
        limits[name] = min(wanted, cap)

    result_services = {}
    for name in names:
        row, limit = row_of[name], limits[name]
        reservation = min(uses[name], limit) if row["reserve"] and uses[name] > 0 else None
        memswap = limit if not row["swap"] else 2 * limit
        if reservation is not None and reservation > limit or memswap < limit:
            raise BudgetError("internal: %s has reservation %s, swap %s for limit %s" % (name, reservation, memswap, limit))
        result_services[name] = {
            "mem_limit_mb": limit,
            "memswap_limit_mb": memswap,
            "mem_reservation_mb": reservation,
            "swap": bool(row["swap"]),
            "need_mb": needs[name],
            "usual_mb": uses[name],
            "source": sources[name],
            "share": round(limit / float(total), 4),
        }

    environment = {}
    kafka_heap = None
    if "kafka" in limits:
        limit = limits["kafka"]
        kafka_heap = min(limit - KAFKA_OFF_HEAP_MB, max(1024, limit // 2))
        if kafka_heap < KAFKA_MIN_HEAP_MB:
            raise BudgetError("kafka's limit of %d MiB leaves no room for a heap of %d MiB plus %d MiB off-heap"
                              % (limit, KAFKA_MIN_HEAP_MB, KAFKA_OFF_HEAP_MB))
        environment["kafka"] = {"KAFKA_HEAP_OPTS": "-Xmx%dm -Xms%dm" % (kafka_heap, kafka_heap)}
    if "clickhouse" in limits:
        environment["clickhouse"] = {"MAX_MEMORY_USAGE_RATIO": str(CLICKHOUSE_RATIO)}
    redis_maxmemory = int(limits["redis"] * REDIS_MAXMEMORY_SHARE) if "redis" in limits else None

    total_limits = sum(limits.values())
    return {
        "total_memory_mb": total,
        "ratio": ratio,
        "reserve_mb": reserve,
        "budget_mb": budget,
        "sum_mb": total_limits,
        "overcommitted": total_limits > budget,
        "headroom_cap_mb": cap_total,
        "relay_threshold": relay_threshold,
        "services": result_services,
        "environment": environment,
        "kafka_heap_mb": kafka_heap,
        "redis_maxmemory_mb": redis_maxmemory,
        "measured_peaks_mb": dict((name, seen[name]) for name in names if name in seen),
    }


def memory_budget(services, total_memory_mb, ratio=0.75, reserve_mb=1024, profiles=None, table=None, overrides=None,
                  measured=None, overcommit=False, relay_threshold=0.95, remembered_peaks_mb=None):
    try:
        return plan(services, total_memory_mb, ratio=ratio, reserve_mb=reserve_mb, profiles=profiles, table=table,
                    overrides=overrides, measured=measured, overcommit=overcommit, relay_threshold=relay_threshold,
                    remembered_peaks_mb=remembered_peaks_mb)
    except BudgetError as exc:
        raise AnsibleFilterError("memory_budget: %s" % exc)


def memory_budget_table(plan_result):
    """Readable lines: service, limit, share of RAM, and the sum against the budget."""
    lines = ["%-44s %9s %7s %s" % ("service", "limit", "of RAM", "source")]
    for name in sorted(plan_result["services"], key=lambda n: -plan_result["services"][n]["mem_limit_mb"]):
        row = plan_result["services"][name]
        lines.append("%-44s %5d MiB %6.1f%% %s" % (name, row["mem_limit_mb"], row["share"] * 100, row["source"]))
    lines.append("sum %d MiB of a %d MiB budget (%d MiB RAM, ratio %.2f)%s" % (
        plan_result["sum_mb"], plan_result["budget_mb"], plan_result["total_memory_mb"], plan_result["ratio"],
        ", OVERCOMMITTED" if plan_result["overcommitted"] else ""))
    return lines


class FilterModule:
    def filters(self):
        return {"memory_budget": memory_budget, "memory_budget_table": memory_budget_table}
