# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory limits for every service of a self-hosted Sentry checkout, sized for the host.

Pure computation: no I/O. The compose_limits role feeds it the services of the
checkout, the host's RAM and (when the host has them) the measured figures of
the running containers, and writes what it returns into the compose override.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import fnmatch
import math
import time

from ansible.errors import AnsibleFilterError

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import MIB
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import DEFAULT_RELAY_THRESHOLD


def _r(usual, min, max, weight, swap, per_worker=0):  # pylint: disable=redefined-builtin
    return dict(usual=usual, min=min, max=max, weight=weight, swap=swap, per_worker=per_worker)


# Name or pattern: usual (what a healthy service holds on a 16 GiB host; its
# reservation), min (the lowest limit: the largest healthy footprint reported,
# with a margin), max (where sharing out spare RAM stops), weight (its share of
# spare RAM), swap (may it swap; never for the stores). MiB. An exact name wins
# over a pattern, then the first matching pattern.
# Sources: self-hosted #3053 (24.4.1, 54 containers, 14 GB on 16 GB: relay
# 1.48 GiB), #2539 (24.11.2: kafka 1.40 GiB, web 1.08 GiB, attachments-consumer
# 637 MiB, worker 574 MiB, generic-metrics-consumer 407 MiB), #1719 (worker
# 875 MiB), #2064 (sentry consumers 70-100 MiB idle), #2355 (snuba consumers
# 50-100 MiB, sentry ingest consumers 60-130 MiB), the brief's footprints
# (snuba consumers 120-330 MiB, sentry consumers 70-400 MiB), relay #3874
# (Relay's RSS does not shrink after a burst), snuba #7868 (snuba-api grows
# about 20 MB/h).
DEFAULT_TABLE = [
    # Stores. Kafka: 1 GiB heap (KAFKA_HEAP_OPTS) plus about 1 GiB off-heap.
    ("kafka", _r(1280, 2048, 4096, 3, False)),
    # ClickHouse caps its server memory at MAX_MEMORY_USAGE_RATIO (0.8) of its own limit: 1920 leaves it 1.5 GiB.
    ("clickhouse", _r(768, 1920, 8192, 4, False)),
    ("postgres", _r(128, 1024, 4096, 2, False)),
    ("pgbouncer", _r(16, 64, 256, 0, False)),
    ("redis", _r(32, 512, 2048, 1, False)),
    ("zookeeper", _r(192, 512, 1024, 0, False)),
    ("memcached", _r(64, 128, 512, 0, True)),  # memcached's default cache is 64 MB
    ("seaweedfs", _r(64, 512, 2048, 1, True)),
    ("seaweedfs-*", _r(32, 256, 1024, 0, True)),
    # Relay's limit also follows its post-burst RSS and its threshold (RELAY_POST_BURST_MB, see Sizing).
    ("relay", _r(1024, 1920, 6144, 4, True)),
    # web and snuba-api minimums also cover install.sh's migrations, run in one-off containers that inherit the override.
    ("web", _r(1024, 1792, 4096, 3, True)),
    ("snuba-api", _r(192, 1024, 2048, 1, True)),
    ("symbolicator", _r(128, 896, 4096, 2, True)),
    ("vroom", _r(32, 256, 1024, 0, True)),
    ("uptime-checker", _r(32, 256, 1024, 0, True)),
    ("nginx", _r(16, 128, 256, 0, True)),
    ("smtp", _r(16, 64, 128, 0, True)),
    ("geoipupdate", _r(16, 128, 256, 0, True)),
    # Sentry's task runners: Celery (24.x-25.x), then taskbroker/taskworker; a taskworker grows with its --concurrency.
    ("worker", _r(448, 1152, 3072, 2, True)),
    ("cron", _r(96, 512, 1024, 0, True)),
    ("taskbroker", _r(64, 512, 2048, 1, True)),
    ("taskscheduler", _r(96, 512, 1024, 0, True)),
    ("taskworker", _r(192, 640, 2048, 2, True, per_worker=64)),
    ("launchpad-taskworker", _r(128, 384, 1024, 1, True, per_worker=64)),
    # sentry-cleanup runs `sentry cleanup` nightly: idle most of the day, about 0.5 GiB while it works.
    ("sentry-cleanup", _r(32, 768, 2048, 0, True)),
    ("*-cleanup", _r(16, 256, 512, 0, True)),
    # Sentry's consumers (Python, the sentry image); attachments and replays hold whole payloads.
    ("attachments-consumer", _r(192, 1024, 2048, 1, True)),
    ("ingest-replay-recordings", _r(128, 768, 2048, 1, True)),
    ("snuba-*", _r(96, 448, 1024, 1, True)),  # snuba's consumers (mostly rust-consumer), replacer, subscriptions
    ("*-consumer", _r(112, 512, 1024, 1, True)),
    ("*-consumer-*", _r(112, 512, 1024, 1, True)),
    ("ingest-*", _r(112, 512, 1024, 1, True)),
    ("post-process-forwarder-*", _r(112, 512, 1024, 1, True)),
    ("monitors-clock-*", _r(80, 512, 1024, 1, True)),
    ("process-*", _r(80, 512, 1024, 1, True)),  # process-spans, process-segments
    ("uptime-results", _r(80, 512, 1024, 1, True)),
]
# Services the table does not know: a small Python process.
DEFAULT_ROW = _r(80, 512, 1024, 1, True)
ROW_KEYS = sorted(DEFAULT_ROW)

KAFKA_OFF_HEAP_MB = 1024
KAFKA_MIN_HEAP_MB = 256
CLICKHOUSE_RATIO = 0.8
REDIS_MAXMEMORY_SHARE = 0.65
# A measured service's lowest limit: its peak of use plus this margin; more for the stores, whose use
# follows their data (a Kafka or ClickHouse killed at its limit stalls the whole pipeline).
MEASURED_MARGIN = 1.2
STORE_MARGIN = 1.5
STORES = ("kafka", "clickhouse", "postgres", "redis", "zookeeper")
# Relay's RSS after a burst, which it keeps (relay #3874; 1.48 GiB in self-hosted #3053).
RELAY_POST_BURST_MB = 1536
# Relay's limit keeps its post-burst figure this far below the threshold it measures against that limit.
RELAY_MARGIN = 1.15
# A measured peak past the row's max and this many times its usual figure is a suspected leak.
LEAK_FACTOR = 3
# What is written is in 64 MiB steps (limits and reservations down, lowest limits up), so that use moving
# by a few MiB rewrites nothing and recreates nothing; the figures summed for the rule are exact.
LIMIT_STEP_MB = 64
# Profiles upstream ships; services of neither are always on.
ERRORS_ONLY = "errors-only"
FEATURE_COMPLETE = "feature-complete"
# What upstream's install.sh demands (MB of RAM): a host below it is no option, whatever the plan says.
INSTALLER_MIN_MB = {FEATURE_COMPLETE: 14000, ERRORS_ONLY: 7000}


class BudgetError(ValueError):
    """The input is malformed; the message says which part."""


def _row(name, table):
    for pattern, row in table:
        if pattern == name:
            return row
    for pattern, row in table:
        if fnmatch.fnmatchcase(name, pattern):
            return row
    return DEFAULT_ROW


def _merged_table(extra):
    if not isinstance(extra or {}, dict):
        raise BudgetError("table must be a mapping of service name or pattern to a row, not %r" % (extra,))
    table = [(pattern, dict(row)) for pattern, row in DEFAULT_TABLE]
    for pattern, changes in (extra or {}).items():
        if not isinstance(changes, dict):
            raise BudgetError("table row %r must be a dict, not %r" % (pattern, changes))
        unknown = set(changes) - set(ROW_KEYS)
        if unknown:
            hint = " (typical is now usual; every service gets a reservation)" if unknown & {"typical", "reserve"} else ""
            raise BudgetError("table row %r has unknown keys %s (known: %s)%s" % (pattern, sorted(unknown), ROW_KEYS, hint))
        for key, value in changes.items():
            wanted = bool if key == "swap" else int
            if isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted):
                raise BudgetError("table row %r: %s must be %s, not %r" % (pattern, key, "true or false" if wanted is bool else "an integer", value))
        for known_pattern, row in table:
            if known_pattern == pattern:
                row.update(changes)
                break
        else:
            row = dict(DEFAULT_ROW)
            row.update(changes)
            table.insert(0, (pattern, row))
    for pattern, row in table:
        if not 0 < row["min"] <= row["max"] or row["weight"] < 0 or row["usual"] < 0 or row["per_worker"] < 0:
            raise BudgetError("table row %r needs 0 < min <= max, and weight, usual, per_worker >= 0: %r" % (pattern, row))
    return table


def _services(services, profiles):
    """Sorted names (compose lists them in a varying order), their profiles and workers."""
    if not isinstance(services, (list, tuple)):
        raise BudgetError("the services must be a list, not %r" % (services,))
    names, profiles_of, workers_of = [], {}, {}
    for item in services:
        own, workers = [], None
        if isinstance(item, dict):
            name, own, workers = item.get("name"), item.get("profiles") or [], item.get("workers")
            if profiles is not None and own and not set(own) & set(profiles):
                continue
        else:
            name = item
        if not isinstance(name, str) or not name:
            raise BudgetError("a service must be a name or a dict with a name: %r" % (item,))
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise BudgetError("workers of %s must be a positive integer, not %r" % (name, workers))
        if name not in names:
            names.append(name)
            profiles_of[name], workers_of[name] = list(own), workers
    if not names:
        raise BudgetError("no services to plan for")
    return sorted(names), profiles_of, workers_of


def _positive_mib(what, mapping):
    if not isinstance(mapping or {}, dict):
        raise BudgetError("%s must be a mapping of service to MiB, not %r" % (what, mapping))
    for name, value in (mapping or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise BudgetError("%s of %s must be a positive integer of MiB, not %r" % (what, name, value))
    return dict(mapping or {})


def _measured_use(measured):
    """What each service uses now (host_memory.use_mb_by_service), once every measurement is checked."""
    if not isinstance(measured or [], list):
        raise BudgetError("measured must be a list of containers, not %r" % (measured,))
    for container in measured or []:
        if not isinstance(container, dict):
            raise BudgetError("measured containers must be dicts, not %r" % (container,))
        service, use = container.get("service"), container.get("use")
        if service and not container.get("error") and use is not None and (not hm.is_number(use) or not 0 <= use < 1 << 60):
            raise BudgetError("the use of %s must be a number of bytes, not %r" % (service, use))
    return hm.use_mb_by_service(measured)


def _remembered(peaks):
    if not peaks:
        return None
    problem = hm.peaks_shape_error(peaks)
    if problem:
        raise BudgetError("remembered_peaks: %s" % problem)
    return peaks


def _steps_up(mb):
    return int(math.ceil(mb / float(LIMIT_STEP_MB))) * LIMIT_STEP_MB


def _steps_down(mb):
    return int(mb // LIMIT_STEP_MB) * LIMIT_STEP_MB


def _water_fill(remaining, rooms, weights):
    """Share ``remaining`` by weight, none beyond its room (strict mode: the sum is what is bounded)."""
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


class Sizing:
    """Usual figure and floor of every service.

    A measured service's usual figure is its peak of use (remembered, or of
    now), its floor that plus a margin, never below its row's ``min``."""

    def __init__(self, names, rows, workers_of, seen, overrides, relay_threshold):
        self.names = names
        self.usual, self.floor, self.source, self.leaks = {}, {}, {}, {}
        for name in names:
            row = rows[name]
            extra = row["per_worker"] * (workers_of.get(name) or 0)
            usual, floor, top = row["usual"] + extra, row["min"] + extra, row["max"] + extra
            peak = seen.get(name)
            if peak and peak > max(top, LEAK_FACTOR * usual):
                self.leaks[name] = peak
                peak = None
            if name in overrides:
                self.source[name] = "override"
                floor = overrides[name]
                usual = min(floor, peak or usual)
            elif peak:
                self.source[name] = "measured"
                margin = STORE_MARGIN if name in STORES else MEASURED_MARGIN
                # The lowest limit is written, so it is a whole step: use moving by a MiB rewrites nothing.
                usual, floor = peak, max(floor, _steps_up(peak * margin))
            else:
                self.source[name] = "table"
            if name == "relay" and name not in overrides:
                floor = max(floor, _steps_up(max(usual, RELAY_POST_BURST_MB) * RELAY_MARGIN / relay_threshold))
            self.usual[name], self.floor[name] = usual, floor
        self.usual_sum = sum(self.usual.values())

    def gap(self):
        """The service whose floor lies furthest above its usual figure, and by how much."""
        name = max(self.names, key=lambda n: (self.floor[n] - self.usual[n], n))
        return name, self.floor[name] - self.usual[name]

    def needs_mb(self):
        """Below Relay's threshold, less the OS reserve, the host must hold this for the rule to hold."""
        return self.usual_sum + max(0, self.gap()[1])


def _ram_for(needed_mb, relay_threshold, reserve):
    """The smallest whole GiB of RAM whose threshold, less the reserve, holds needed_mb."""
    return int(math.ceil((needed_mb + reserve) / relay_threshold / 1024.0))


def _utc(epoch):
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class Planner:
    """The plan for one host; see DOCUMENTATION."""

    def __init__(self, services, total_memory_mb, reserve_mb=512, profiles=None, table=None, overrides=None, measured=None,
                 remembered_peaks=None, relay_threshold=DEFAULT_RELAY_THRESHOLD, strict=False, ratio=0.75, now=None):
        try:
            self.total, self.reserve = int(total_memory_mb), int(reserve_mb)
            self.ratio, self.threshold = float(ratio), float(relay_threshold)
        except (TypeError, ValueError, OverflowError):
            raise BudgetError("total_memory_mb and reserve_mb must be integers, ratio and relay_threshold numbers")
        if not 0 < self.ratio < 1:
            raise BudgetError("ratio must be in (0, 1), not %s" % self.ratio)
        if not 0.5 <= self.threshold <= 1:
            raise BudgetError("relay_threshold must be in [0.5, 1], not %s" % self.threshold)
        if self.total <= 0 or self.reserve < 0 or self.reserve >= self.total:
            raise BudgetError("total_memory_mb (%s) must be positive and larger than reserve_mb (%s)" % (self.total, self.reserve))
        self.strict = bool(strict)
        self.now = int(time.time() if now is None else now)
        self.names, self.profiles_of, self.workers_of = _services(services, profiles)
        self.table = _merged_table(table)
        self.rows = dict((n, _row(n, self.table)) for n in self.names)
        self.overrides = _positive_mib("override", overrides)
        unknown = sorted(set(self.overrides) - set(self.names))
        if unknown:
            raise BudgetError("overrides name services the checkout does not run: %s (services: %s)"
                              % (", ".join(unknown), ", ".join(self.names)))
        self.use_now = _measured_use(measured)
        self.remembered = _remembered(remembered_peaks)
        self.seen = dict(self.use_now)
        for name, record in (self.remembered or {"services": {}})["services"].items():
            self.seen[name] = max(self.seen.get(name, 0), record["mb"])
        self.limit_mb = int(self.threshold * self.total) - self.reserve

    def sizing(self, names):
        return Sizing(names, self.rows, self.workers_of, self.seen, self.overrides, self.threshold)

    def profile(self, names):
        """The profile whose installer minimum applies: feature-complete when any service needs it."""
        return FEATURE_COMPLETE if any(FEATURE_COMPLETE in self.profiles_of.get(n, []) for n in names) else ERRORS_ONLY

    def installer_min_mib(self, names):
        return int(math.ceil(INSTALLER_MIN_MB[self.profile(names)] * 1000 * 1000 / float(MIB)))

    def budget(self):
        return int(min(self.ratio * self.total, self.limit_mb)) if self.strict else None

    def rule_holds(self, sizing):
        return sizing.needs_mb() <= self.limit_mb

    def fits(self, sizing):
        """Whether a plan is made: the host meets upstream's installer minimum (strict mode: the rule and the budget)."""
        if self.total < self.installer_min_mib(sizing.names):
            return False
        return not self.strict or (self.rule_holds(sizing) and sum(sizing.floor.values()) <= self.budget())

    def shortfall(self, sizing):
        gap_name, gap = sizing.gap()
        return ("the usual figures of the %d services add up to %d MiB, and %s needs %d MiB more up to its lowest limit, "
                "but this host keeps %d MiB below Relay's threshold (%d%% of %d MiB RAM, less %d MiB for the OS)"
                % (len(sizing.names), sizing.usual_sum, gap_name, gap, self.limit_mb, round(self.threshold * 100),
                   self.total, self.reserve))

    def options(self, sizing, refusing):
        """What would work on this host: refusing, whatever gets a plan; else what would keep the rule."""
        options = []
        errors_only = [n for n in sizing.names if not self.profiles_of.get(n) or ERRORS_ONLY in self.profiles_of[n]]
        if len(errors_only) < len(sizing.names):
            if self.total >= self.installer_min_mib(errors_only) and (refusing or self.rule_holds(self.sizing(errors_only))):
                options.append("the errors-only profile (COMPOSE_PROFILES=errors-only in .env, %d services)" % len(errors_only))
        options.append("%d GiB of RAM or more" % self.ram_that_fits(sizing))
        if not refusing:
            options.append("swap for the cold memory of idle consumers (the swap role)")
        if self.strict and self.total >= self.installer_min_mib(sizing.names):
            options.append("the default sizing (compose_limits_strict: false), in which limits may add up to more than RAM")
        if sizing.leaks or any(s == "measured" for s in sizing.source.values()):
            options.append("planning from the table instead of measured peaks (compose_limits_forget_peaks: true, "
                           "or compose_limits_use_measured: false)")
        return options

    def refusal(self, sizing):
        """One sentence: why no plan is made, the totals, and what would fit this host."""
        minimum = self.installer_min_mib(sizing.names)
        if self.total < minimum:
            text = ("This host has %d MiB of RAM, below the %d MB (%d MiB) upstream's installer demands for the %s profile; "
                    "%s" % (self.total, INSTALLER_MIN_MB[self.profile(sizing.names)], minimum, self.profile(sizing.names),
                            self.shortfall(sizing)))
        elif not self.rule_holds(sizing):
            text = "In strict mode the rule must hold, but %s" % self.shortfall(sizing)
        else:
            text = ("In strict mode the %d services need %d MiB of limits but the budget is %s MiB (%d%% of %d MiB RAM)"
                    % (len(sizing.names), sum(sizing.floor.values()), self.budget(), round(self.ratio * 100), self.total))
        return "%s. Options: %s." % (text, "; ".join(self.options(sizing, refusing=True)))

    def warning(self, sizing, past_rule):
        """One plain warning when the usual use leaves less headroom than the rule wants."""
        return ("Less headroom than the rule wants: %s. The limits written are the safest this host allows (a leak is "
                "still stopped in its own container), but %d of them (%s) could take the host past Relay's threshold "
                "before they stop a leak. Options: %s."
                % (self.shortfall(sizing), len(past_rule), ", ".join(past_rule), "; ".join(self.options(sizing, refusing=False))))

    def ram_that_fits(self, sizing):
        ram = max(_ram_for(sizing.needs_mb(), self.threshold, self.reserve),
                  int(math.ceil(self.installer_min_mib(sizing.names) / 1024.0)))
        if self.strict:
            floors = sum(sizing.floor.values())
            ram = max(ram, int(math.ceil(floors / self.ratio / 1024.0)), _ram_for(floors, self.threshold, self.reserve))
        return ram

    def limits(self, sizing):
        """Floors plus a weighted share of the spare RAM below the single-fault cap; written in 64 MiB steps."""
        headroom = self.limit_mb - sizing.usual_sum
        free = [n for n in self.names if n not in self.overrides]
        caps = dict((n, sizing.usual[n] + headroom) for n in self.names)
        rooms = dict((n, max(0, min(self._top(n, sizing), caps[n]) - sizing.floor[n])) for n in free)
        weights = dict((n, self.rows[n]["weight"]) for n in free)
        if self.strict:
            extra = _water_fill(self.budget() - sum(sizing.floor.values()), rooms, weights)
        else:
            # Each service may take its weight's share of the spare RAM: monotone in RAM, whatever the others do.
            total_weight = float(sum(weights.values())) or 1.0
            extra = dict((n, min(rooms[n], max(0, headroom) * weights[n] / total_weight)) for n in free)
        limits = {}
        for name in self.names:
            floor = sizing.floor[name]
            if name in self.overrides:
                limits[name] = floor
            else:
                # Rounded down to a step (never below the floor): the figures summed are exact, the limits written are round.
                limits[name] = max(floor, _steps_down(min(caps[name], floor + extra.get(name, 0.0))))
        return limits, caps

    def _top(self, name, sizing):
        row = self.rows[name]
        return max(row["max"] + row["per_worker"] * (self.workers_of.get(name) or 0), sizing.floor[name])

    def history(self, sizing):
        """How old the history of peaks is, in words and figures."""
        measured = sorted(n for n in sizing.names if sizing.source[n] == "measured")
        remembered = self.remembered and [n for n in sizing.names if n in self.remembered["services"]]
        if remembered:
            since = self.remembered["since"]
            days = max(0.0, (self.now - since) / 86400.0)
            text = ("planned from the peaks of use of %d services recorded since %s (%.1f days)"
                    % (len(measured), _utc(since), days))
        elif measured:
            since, days = None, 0.0
            margins = (round((MEASURED_MARGIN - 1) * 100), round((STORE_MARGIN - 1) * 100))
            text = ("no history of peaks yet: planned from the use of now of %d services, each limit at least %d%% above "
                    "it (%d%% for the stores)" % ((len(measured),) + margins))
        else:
            since, days = None, 0.0
            text = "no containers measured: planned from the table of usual figures"
        return {"since": since, "days": round(days, 2), "measured": len(measured), "text": text}

    def plan(self):
        sizing = self.sizing(self.names)
        result = {
            "total_memory_mb": self.total,
            "reserve_mb": self.reserve,
            "relay_threshold": self.threshold,
            "strict": self.strict,
            "ratio": self.ratio,
            "threshold_mb": self.limit_mb,
            "usual_sum_mb": sizing.usual_sum,
            "headroom_mb": self.limit_mb - sizing.usual_sum,
            "budget_mb": self.budget(),
            "installer_min_mb": INSTALLER_MIN_MB[self.profile(self.names)],
            "suspected_leaks": sorted(sizing.leaks),
            "history": self.history(sizing),
            "warning": None,
            "past_rule": [],
        }
        if not self.fits(sizing):
            result.update(fits=False, refusal=self.refusal(sizing), ram_that_fits_gib=self.ram_that_fits(sizing))
            return result
        limits, caps = self.limits(sizing)
        past_rule = sorted(n for n in self.names if limits[n] > caps[n])
        if past_rule:
            result.update(warning=self.warning(sizing, past_rule), past_rule=past_rule,
                          ram_that_fits_gib=self.ram_that_fits(sizing))
        services = {}
        for name in self.names:
            limit, usual = limits[name], sizing.usual[name]
            swap = bool(self.rows[name]["swap"])
            services[name] = {
                "mem_limit_mb": limit,
                "memswap_limit_mb": 2 * limit if swap else limit,
                # Written in whole steps, as the limits are, rounded down (at least one step): the reservations
                # never add up to more than the usual figures the rule sums (tiny services aside).
                "mem_reservation_mb": min(limit, max(LIMIT_STEP_MB, _steps_down(usual))) if usual > 0 else None,
                "swap": swap,
                "floor_mb": sizing.floor[name],
                "usual_mb": usual,
                "source": sizing.source[name],
                "share": round(limit / float(self.total), 4),
            }
            if name in sizing.leaks:
                services[name]["suspected_leak_mb"] = sizing.leaks[name]
        total_limits = sum(limits.values())
        result.update(
            fits=True,
            refusal=None,
            sum_mb=total_limits,
            overcommitted=total_limits > self.total,
            services=services,
            peaks=hm.record_peaks(self.remembered, self.use_now, self.now, leave_out=sizing.leaks),
        )
        result.update(self.knobs(limits))
        return result

    @staticmethod
    def knobs(limits):
        environment, kafka_heap = {}, None
        if "kafka" in limits:
            limit = limits["kafka"]
            kafka_heap = min(limit - KAFKA_OFF_HEAP_MB, max(1024, limit // 2))
            if kafka_heap < KAFKA_MIN_HEAP_MB:
                raise BudgetError("kafka's limit of %d MiB leaves no room for a heap of %d MiB plus %d MiB off-heap"
                                  % (limit, KAFKA_MIN_HEAP_MB, KAFKA_OFF_HEAP_MB))
            environment["kafka"] = {"KAFKA_HEAP_OPTS": "-Xmx%dm -Xms%dm" % (kafka_heap, kafka_heap)}
        if "clickhouse" in limits:
            environment["clickhouse"] = {"MAX_MEMORY_USAGE_RATIO": str(CLICKHOUSE_RATIO)}
        return {
            "environment": environment,
            "kafka_heap_mb": kafka_heap,
            "redis_maxmemory_mb": int(limits["redis"] * REDIS_MAXMEMORY_SHARE) if "redis" in limits else None,
        }


def plan(services, total_memory_mb, **options):
    """The plan described in DOCUMENTATION; raises BudgetError on malformed input."""
    return Planner(services, total_memory_mb, **options).plan()


def memory_budget(services, total_memory_mb, **options):
    try:
        return plan(services, total_memory_mb, **options)
    except (BudgetError, TypeError) as exc:
        raise AnsibleFilterError("memory_budget: %s" % exc)


# Services that have a row of their own in the table whatever their figures: Relay's limit is a key figure.
TABLE_OWN_ROWS = ("relay",)
# A group's label names its services up to this many characters (the override's diff names each one).
TABLE_LABEL_CHARS = 60


def _group_label(names, everyone):
    """``names`` (sorted) in one label: the names, a prefix they share (and who else has it), or the first few names."""
    joined = ", ".join(names)
    if len(names) <= 3 and len(joined) <= TABLE_LABEL_CHARS:
        return joined
    prefix = names[0][:names[0].rfind("-") + 1]
    while prefix and not all(name.startswith(prefix) for name in names):
        prefix = prefix[:prefix[:-1].rfind("-") + 1]
    others = [name for name in everyone if prefix and name.startswith(prefix) and name not in names]
    if prefix and len(others) <= 2:
        return "%d services %s*%s" % (len(names), prefix, " but " + ", ".join(others) if others else "")
    label = "%d services: %s" % (len(names), joined)
    return label if len(label) <= TABLE_LABEL_CHARS else label[:TABLE_LABEL_CHARS - 4].rsplit(",", 1)[0] + ", ..."


def _table_rows(plan_result):
    """(label, usual text, limit, share, source, note): a row per service that stands out, one per group of the rest.

    Services stand out by name (TABLE_OWN_ROWS), a suspected leak, a limit past
    the rule or an override; the others are grouped by limit and source.
    """
    rows = plan_result["services"]
    past_rule = plan_result.get("past_rule", [])
    groups = {}
    for name in sorted(rows):
        row = rows[name]
        own = name in TABLE_OWN_ROWS or "suspected_leak_mb" in row or name in past_rule or row["source"] == "override"
        groups.setdefault((name,) if own else (row["mem_limit_mb"], row["source"]), []).append(name)
    table = []
    for names in groups.values():
        row = rows[names[0]]
        usual = sorted(set(rows[n]["usual_mb"] for n in names))
        note = " (suspected leak: measured %d MiB)" % row["suspected_leak_mb"] if "suspected_leak_mb" in row else ""
        note += " (past the rule)" if names[0] in past_rule else ""
        table.append((_group_label(names, rows), "%d" % usual[0] if len(usual) == 1 else "%d-%d" % (usual[0], usual[-1]),
                      row["mem_limit_mb"], row["share"] * 100, row["source"], note, max(usual)))
    table.sort(key=lambda r: (-r[2], -r[6], r[0]))
    return [r[:6] for r in table]


def memory_budget_table(plan_result):
    """Readable lines: the services (those with the same limit grouped), then the totals, the history and any warning."""
    if not plan_result.get("fits"):
        return [plan_result.get("refusal") or "no plan"]
    table = _table_rows(plan_result)
    width = max([len("service")] + [len(row[0]) for row in table])
    usual_width = max([len("usual") - 4] + [len(row[1]) for row in table])
    lines = ["%-*s %*s %9s %7s %s" % (width, "service", usual_width + 4, "usual", "limit", "of RAM", "source")]
    for label, usual, limit, share, source, note in table:
        lines.append("%-*s %*s MiB %5d MiB %6.1f%% %s%s" % (width, label, usual_width, usual, limit, share, source, note))
    lines.append("usual use %d MiB of %d MiB below Relay's threshold (%d%% of %d MiB RAM, less %d MiB for the OS): "
                 "any one service may grow %d MiB above its usual use before its limit stops it" % (
                     plan_result["usual_sum_mb"], plan_result["threshold_mb"], round(plan_result["relay_threshold"] * 100),
                     plan_result["total_memory_mb"], plan_result["reserve_mb"], plan_result["headroom_mb"]))
    if plan_result["strict"]:
        lines.append("limits add up to %d MiB of a %d MiB budget (strict, ratio %.2f)" % (
            plan_result["sum_mb"], plan_result["budget_mb"], plan_result["ratio"]))
    else:
        more = ": more than RAM, which is normal, since only one service at a time is expected to reach its limit"
        lines.append("limits add up to %d MiB (%d%% of RAM)%s" % (
            plan_result["sum_mb"], round(100.0 * plan_result["sum_mb"] / plan_result["total_memory_mb"]),
            more if plan_result["overcommitted"] else ""))
    lines.append(plan_result["history"]["text"])
    if plan_result.get("suspected_leaks"):
        lines.append("suspected leak: %s measured far above the table; sized from the table, so the new limit stops "
                     "the leak (a restart or recreate frees the memory)" % ", ".join(plan_result["suspected_leaks"]))
    if plan_result.get("warning"):
        lines.append("WARNING: " + plan_result["warning"])
    return lines


class FilterModule:
    def filters(self):
        return {"memory_budget": memory_budget, "memory_budget_table": memory_budget_table}
