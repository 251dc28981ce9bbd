# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Early warning before Relay rejects events for lack of memory.

Run by a systemd timer (role sentry_selfhosted.memory.memory_alerts). Each run
samples Relay's own memory figure (host or cgroup, as the Relay release and
the host's cgroup mode decide), swap, pressure, OOM kills and every compose
container against its limit; keeps a short history; estimates the time until
Relay's threshold is crossed; and reports through the outputs the
configuration turns on: journal, Prometheus textfile, webhook.

Standard library only; Ansible need not be on the host. The figures come
from host_memory.py, the collection's one parser of /proc and cgroup files,
and the plumbing (commands, journal, configuration, atomic writes) from
host_program.py, both copied beside this program in
/usr/local/libexec/sentry-selfhosted-memory/.
"""

from __future__ import absolute_import, division, print_function

import argparse
import base64
import json
import os
import shutil
import socket
import sys
import time

try:
    import urllib.parse as urllib_parse
    import urllib.request as urllib_request
except ImportError:  # pragma: no cover - Python 2 is not supported on hosts
    urllib_parse = urllib_request = None

# The one import path of the host programs: the module_utils copies beside them.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import host_memory as hm  # noqa: E402 pylint: disable=wrong-import-position,import-error
import host_program as hp  # noqa: E402 pylint: disable=wrong-import-position,import-error
import sentry_compose as sc  # noqa: E402 pylint: disable=wrong-import-position,import-error
import sentry_checkout as ck  # noqa: E402 pylint: disable=wrong-import-position,import-error

LEVELS = ("ok", "warning", "critical")
MIB = hm.MIB

# Every setting of the configuration: its shape (host_program.checked) and its default. A row that ends in a
# variable's name is set by the role from that variable (in seconds where it counts minutes or hours), and its
# default is the role's: hacking/role_settings.py writes it from the role's meta/argument_specs.yml.
SETTINGS = {
    "project_dir": ("string", "/opt/sentry"),  # sentry_selfhosted_dir
    "compose_project": ("string?", None),
    "docker": ("string", "docker"),  # sentry_selfhosted_docker
    "docker_timeout": ("positive", 30),
    "host": ("string?", None),  # memory_alerts_host_label
    "relay_threshold": ("ratio", ck.DEFAULT_RELAY_THRESHOLD),
    "relay_max_memory_bytes": ("positive?", None),  # memory_alerts_relay_max_memory_bytes
    "warning_ratio": ("ratio", 0.85),
    "critical_ratio": ("ratio", 0.90),
    "service_warning_ratio": ("ratio", 0.9),  # memory_alerts_service_warning_ratio
    "trend_window_seconds": ("count", 3600),
    "trend_min_samples": ("count", 5),
    "trend_horizon_seconds": ("count", 48 * 3600),
    "trend_warning_seconds": ("count", 10800),  # memory_alerts_trend_warning_hours
    "growth_min_bytes": ("count", 16 * MIB),
    "resend_interval_seconds": ("count", 14400),  # memory_alerts_resend_interval_minutes
    "state_file": ("string", "/var/lib/sentry-selfhosted-memory/memory-alerts-state.json"),
    "peaks_file": ("string?", "/var/lib/sentry-selfhosted-memory/use-peaks.json"),  # sentry_selfhosted_peaks_file
    "journal": ("bool", True),
    "journal_summary": ("bool", True),
    "metrics_file": ("string?", None),
    "webhook_url_file": ("string?", None),
    "webhook_format": (("json", "slack"), "json"),  # memory_alerts_webhook_format
    "webhook_timeout": ("positive", 10),
}

HISTORY_LIMIT = 2000
PENDING_EVENTS_LIMIT = 20


ConfigError = hp.ConfigError


# --- configuration ---------------------------------------------------------

def load_config(path):
    try:
        return make_config(hp.read_json(path))
    except ConfigError as exc:
        raise ConfigError("the configuration %s: %s" % (path, exc))


def make_config(given):
    config = hp.make_config(given, SETTINGS)
    if not 0 < config["warning_ratio"] < config["critical_ratio"] <= config["relay_threshold"]:
        raise ConfigError("need 0 < warning_ratio < critical_ratio <= relay_threshold, got %s, %s, %s"
                          % (config["warning_ratio"], config["critical_ratio"], config["relay_threshold"]))
    if config["trend_min_samples"] < 3:
        raise ConfigError("trend_min_samples must be at least 3")
    return config


# --- sampling --------------------------------------------------------------

def sample(config, now, root="/", run=None, which=shutil.which):
    """One reading of the host: Relay's figure, RAM, swap, PSI, OOM kills, containers."""
    if run is None:
        def run(argv):
            return hp.run_command(argv, config["docker_timeout"])
    notes = []
    docker = which(config["docker"])
    if docker is None:
        notes.append("containers were not listed (no %s CLI on the PATH)" % config["docker"])
    figure = ck.relay_figure(config["project_dir"], root, run if docker else None, docker or config["docker"],
                             threshold=config["relay_threshold"], max_bytes=config["relay_max_memory_bytes"],
                             compose_project=config["compose_project"])
    meminfo = figure["meminfo"]
    vmstat = hm.read_vmstat(root)
    return {
        "time": now,
        "boot_id": hm.read_sysctl("kernel.random.boot_id", root),
        "cgroup_mode": figure["cgroup_mode"],
        "project": figure["project"],
        "ram": hm.host_memory_from_meminfo(meminfo),
        "swap": hm.swap_from_meminfo(meminfo),
        "swap_areas": len(hm.read_swaps(root)),
        "pressure": hm.read_pressure(root),
        "oom_kills": vmstat.get("oom_kill"),
        "relay": figure["relay"],
        "containers_listed": figure["containers_listed"],
        "containers": [c for c in figure["containers"] if "error" not in c],
        "notes": notes + figure["notes"],
    }


# --- levels and trend ------------------------------------------------------

def relay_levels(config, relay):
    """Bytes of Relay's figure at which warning, critical and rejection begin.

    The ratios are of Relay's total; with health.max_memory_bytes set, the same
    proportion of it also counts, whichever comes first.
    """
    threshold = config["relay_threshold"]
    max_bytes = relay.get("max_memory_bytes")

    def level(ratio):
        value = int(relay["total"] * ratio)
        if max_bytes is not None:
            value = min(value, int(max_bytes * ratio / threshold))
        return value

    return {"warning": level(config["warning_ratio"]), "critical": level(config["critical_ratio"]),
            "reject": level(threshold)}


def median(values):
    ordered = sorted(values)
    count = len(ordered)
    if not count:
        raise ValueError("median of nothing")
    middle = count // 2
    return float(ordered[middle]) if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def theil_sen(points):
    """Slope and intercept of the Theil-Sen fit: medians, so a few outliers do not move it."""
    slopes = []
    for index, (t1, y1) in enumerate(points):
        for t2, y2 in points[index + 1:]:
            if t2 != t1:
                slopes.append((y2 - y1) / float(t2 - t1))
    if not slopes:
        return None
    slope = median(slopes)
    intercept = median([y - slope * t for t, y in points])
    return slope, intercept


def relay_key(relay):
    """Samples are comparable while Relay measures the same thing against the same total."""
    return "%s/%d" % (relay["measures"], relay["total"])


def window(history, now, seconds):
    return [h for h in history if now - seconds <= h["t"] <= now]


def relay_trend(history, now, relay, reject, config):
    """Growth rate of Relay's figure and the seconds until it reaches ``reject``.

    ``seconds_to_threshold`` is 0 once it is reached, None when the figure is
    not growing or would take longer than the horizon to get there.
    """
    key = relay_key(relay)
    points = [(h["t"], h["relay"]) for h in window(history, now, config["trend_window_seconds"]) if h["rk"] == key]
    result = {"samples": len(points), "slope": None, "seconds_to_threshold": None}
    if relay["used"] >= reject:
        result["seconds_to_threshold"] = 0
    if len(points) < config["trend_min_samples"]:
        return result
    fit = theil_sen(points)
    if fit is None:
        return result
    slope, intercept = fit
    result["slope"] = slope
    if result["seconds_to_threshold"] == 0 or slope <= 0:
        return result
    fitted_now = intercept + slope * now
    eta = max(0.0, (reject - fitted_now) / slope)
    if eta <= config["trend_horizon_seconds"]:
        result["seconds_to_threshold"] = eta
    return result


def container_growth(history, now, config):
    """Per container: bytes grown over the window (Theil-Sen slope x time covered), largest first."""
    series = {}
    for entry in window(history, now, config["trend_window_seconds"]):
        for name, use in entry["s"].items():
            series.setdefault(name, []).append((entry["t"], use))
    growth = []
    for name, points in series.items():
        if len(points) < config["trend_min_samples"]:
            continue
        fit = theil_sen(points)
        if fit is None:
            continue
        span = points[-1][0] - points[0][0]
        growth.append({"container": name, "bytes": int(fit[0] * span), "seconds": span})
    growth.sort(key=lambda g: g["bytes"], reverse=True)
    return growth


def record(history, sample_, now, config):
    """The history with this sample appended and samples older than the window dropped."""
    entry = {
        "t": now,
        "relay": sample_["relay"]["used"],
        "rk": relay_key(sample_["relay"]),
        "s": dict((c["name"], c["use"]) for c in sample_["containers"] if "use" in c),
    }
    kept = [h for h in window(history, now, config["trend_window_seconds"]) if h["t"] < now]
    kept.append(entry)
    return kept[-HISTORY_LIMIT:]


# --- words -----------------------------------------------------------------

human = hm.human_bytes


def human_duration(seconds):
    seconds = int(round(seconds))
    if seconds < 90:
        return "%d s" % seconds
    if seconds < 90 * 60:
        return "%d min" % round(seconds / 60.0)
    if seconds < 48 * 3600:
        return "%d h" % round(seconds / 3600.0)
    return "%d days" % round(seconds / 86400.0)


def window_words(seconds):
    if abs(seconds - 3600) <= 300:
        return "the last hour"
    return "the last %s" % human_duration(seconds)


def trend_words(trend, growth, config):
    words = []
    eta = trend["seconds_to_threshold"]
    if eta == 0:
        words.append("Relay is rejecting events now")
    elif eta is not None:
        words.append("Relay will start rejecting events in about %s" % human_duration(eta))
    elif trend["slope"] is not None and trend["slope"] > 0:
        words.append("Relay's threshold is more than %s away at the current rate" % human_duration(config["trend_horizon_seconds"]))
    if growth and growth[0]["bytes"] >= config["growth_min_bytes"]:
        top = growth[0]
        words.append("%s grew %s in %s" % (top["container"], human(top["bytes"]), window_words(top["seconds"])))
    return "; ".join(words)


def relay_summary(relay, levels, trend_text):
    return relay_words(relay, levels) + (". " + trend_text if trend_text else "")


def relay_words(relay, levels):
    return ("Relay's memory figure is %.1f%% (%s of %s, %s); warning at %s, critical at %s, Relay rejects events at %s"
            % (relay["used_percent"], human(relay["used"]), human(relay["total"]), relay["source"],
               human(levels["warning"]), human(levels["critical"]), human(levels["reject"])))


# --- alerts ----------------------------------------------------------------

def evaluate(config, sample_, levels, trend, growth, previous_levels):
    """What each alert's level is now: {key: {"level", "message"}}.

    ``previous_levels`` are the current levels from the state; a service
    alert whose container is gone resolves, unless containers could not be
    listed this time (then it is left as it was).
    """
    relay = sample_["relay"]
    used = relay["used"]
    if used >= levels["critical"] or relay["would_reject"]:
        level = "critical"
    elif used >= levels["warning"]:
        level = "warning"
    else:
        level = "ok"
    trend_text = trend_words(trend, growth, config)
    alerts = {"relay": {"level": level, "message": relay_summary(relay, levels, trend_text) + "."}}

    eta = trend["seconds_to_threshold"]
    soon = config["trend_warning_seconds"] > 0 and eta is not None and eta <= config["trend_warning_seconds"]
    alerts["relay_trend"] = {
        "level": "warning" if soon and level == "ok" else "ok",
        "message": ("%s. %s." % (trend_text, relay_words(relay, levels))) if soon else "Relay's figure is not heading for its threshold soon.",
    }

    seen = set()
    for container in sample_["containers"]:
        key = "container:%s" % container["name"]
        seen.add(key)
        limit = container.get("limit")
        if not limit or "use" not in container:
            continue
        # What the container uses, not its page cache: the kernel drops that before the limit kills anything.
        ratio = container["use"] / float(limit)
        alerts[key] = {
            "level": "warning" if ratio >= config["service_warning_ratio"] else "ok",
            "message": "%s (service %s) uses %s of its %s limit (%.0f%%; warning at %.0f%%)"
                       % (container["name"], container["service"], human(container["use"]), human(limit),
                          100 * ratio, 100 * config["service_warning_ratio"]),
        }
    for key, old in previous_levels.items():
        if key.startswith("container:") and key not in seen:
            name = key.split(":", 1)[1]
            alerts[key] = ({"level": "ok", "message": "%s is no longer running" % name} if sample_["containers_listed"]
                           else {"level": old, "message": "%s: containers were not listed this time" % name})
    return alerts


def oom_events(state, sample_):
    """An event when the kernel's OOM killer struck since the previous run (same boot)."""
    previous = state.get("oom")
    current = sample_["oom_kills"]
    state["oom"] = {"boot_id": sample_["boot_id"], "kills": current}
    if not previous or current is None or previous.get("boot_id") != sample_["boot_id"] or previous.get("kills") is None:
        return []
    new = current - previous["kills"]
    if new <= 0:
        return []
    return [{"key": "oom", "level": "warning",
             "message": "the kernel's OOM killer killed %d process%s since the last check" % (new, "" if new == 1 else "es")}]


def update_alerts(state, alerts, now):
    """Record each alert's level, and since when it has held."""
    records = state.setdefault("alerts", {})
    for key, alert in alerts.items():
        record_ = records.setdefault(key, {"level": "ok", "since": now, "sent": {}})
        if record_["level"] != alert["level"]:
            record_["previous"] = record_["level"]
            record_["level"] = alert["level"]
            record_["since"] = now


def due(state, alerts, channel, now, resend_seconds):
    """Alerts this channel must hear about now: a level it has not been told, or a resend."""
    found = []
    for key in sorted(alerts):
        record_ = state["alerts"].get(key)
        if record_ is None:
            continue
        told = record_["sent"].get(channel, {"level": "ok", "at": None})
        if record_["level"] != told["level"]:
            kind = "resolved" if record_["level"] == "ok" else "raised"
        elif record_["level"] != "ok" and resend_seconds and told["at"] is not None and now - told["at"] >= resend_seconds:
            kind = "repeated"
        else:
            continue
        found.append({"key": key, "level": record_["level"], "previous": told["level"], "kind": kind,
                      "since": record_["since"], "message": alerts[key]["message"]})
    return found


def mark_sent(state, notifications, channel, now):
    for item in notifications:
        record_ = state["alerts"].get(item["key"])
        if record_ is not None:
            record_["sent"][channel] = {"level": item["level"], "at": now}
    forget_resolved(state)


def forget_resolved(state):
    """Drop a gone container's record once every channel has heard it resolved.

    evaluate() keeps a record's container alive (as ok) until then, so a
    resolution that could not be sent is retried like any other.
    """
    records = state.get("alerts", {})
    for key in list(records):
        record_ = records[key]
        told_ok = all(sent["level"] == "ok" for sent in record_["sent"].values())
        if key.startswith("container:") and record_["level"] == "ok" and told_ok:
            del records[key]


def queue_events(state, channel, events):
    pending = state.setdefault("pending_events", {}).setdefault(channel, [])
    pending.extend(events)
    del pending[:-PENDING_EVENTS_LIMIT]
    return list(pending)


def clear_events(state, channel):
    state.setdefault("pending_events", {})[channel] = []


# --- outputs ---------------------------------------------------------------

def metric_labels(labels):
    if not labels:
        return ""
    escaped = []
    for key in sorted(labels):
        value = str(labels[key]).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        escaped.append('%s="%s"' % (key, value))
    return "{%s}" % ",".join(escaped)


def metric_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class Metrics:
    def __init__(self, prefix=""):
        self.prefix = prefix
        self.families = []

    def add(self, name, kind, help_text, samples):
        """samples: list of (labels dict, value); values of None are left out."""
        samples = [(labels, value) for labels, value in samples if value is not None]
        if samples:
            self.families.append((self.prefix + name, kind, help_text, samples))

    def text(self):
        lines = []
        for name, kind, help_text, samples in self.families:
            lines.append("# HELP %s %s" % (name, help_text.replace("\\", "\\\\").replace("\n", " ")))
            lines.append("# TYPE %s %s" % (name, kind))
            for labels, value in samples:
                lines.append("%s%s %s" % (name, metric_labels(labels), metric_value(value)))
        return "\n".join(lines) + "\n"


def render_metrics(sample_, levels, trend, growth, alerts):
    relay = sample_["relay"]
    m = Metrics("sentry_memory_")
    info = {"measures": relay["measures"], "release": relay["release"] or "unknown", "cgroup_mode": sample_["cgroup_mode"]}
    m.add("relay_info", "gauge", "What Relay's memory probe measures on this host (value always 1).", [(info, 1)])
    m.add("relay_used_bytes", "gauge", "Bytes Relay counts as used.", [({}, relay["used"])])
    m.add("relay_total_bytes", "gauge", "Bytes Relay counts as total.", [({}, relay["total"])])
    m.add("relay_threshold_ratio", "gauge", "Relay's health.max_memory_percent as a fraction.", [({}, float(relay["threshold"]))])
    m.add("relay_level_bytes", "gauge", "Relay's figure at which each level begins (reject: Relay answers 503).",
          [({"level": name}, levels[name]) for name in ("warning", "critical", "reject")])
    m.add("relay_headroom_bytes", "gauge", "Bytes left before Relay rejects events (negative once it does).",
          [({}, levels["reject"] - relay["used"])])
    m.add("relay_would_reject", "gauge", "1 when Relay answers every event with 503 now.", [({}, relay["would_reject"])])
    m.add("relay_growth_bytes_per_second", "gauge", "Robust (Theil-Sen) growth rate of Relay's figure over the trend window.",
          [({}, trend["slope"])])
    m.add("relay_seconds_to_threshold", "gauge",
          "Estimated seconds until Relay rejects events at the current rate; absent when not within the horizon.",
          [({}, trend["seconds_to_threshold"])])
    m.add("alert_level", "gauge", "Alert level: 0 ok, 1 warning, 2 critical.",
          [({"alert": key}, LEVELS.index(alerts[key]["level"])) for key in sorted(alerts)])
    ram = sample_["ram"]
    m.add("ram_total_bytes", "gauge", "MemTotal.", [({}, ram["total"])])
    m.add("ram_available_bytes", "gauge", "MemAvailable.", [({}, ram["available"])])
    m.add("swap_total_bytes", "gauge", "SwapTotal.", [({}, sample_["swap"]["total"])])
    m.add("swap_used_bytes", "gauge", "SwapTotal - SwapFree.", [({}, sample_["swap"]["used"])])
    pressure = sample_["pressure"] or {}
    m.add("pressure_ratio", "gauge", "Memory pressure stall averages (PSI) as fractions.",
          [({"kind": kind, "window": w}, pressure[kind][avg] / 100.0)
           for kind in ("some", "full") if kind in pressure
           for w, avg in (("10s", "avg10"), ("60s", "avg60"), ("300s", "avg300")) if avg in pressure[kind]])
    m.add("pressure_stall_seconds_total", "counter", "Total memory stall time (PSI).",
          [({"kind": kind}, pressure[kind]["total"] / 1e6) for kind in ("some", "full") if "total" in pressure.get(kind, {})])
    m.add("oom_kills_total", "counter", "OOM kills since boot (/proc/vmstat oom_kill).", [({}, sample_["oom_kills"])])
    m.add("containers_listed", "gauge", "1 when the compose project's containers could be listed.",
          [({}, sample_["containers_listed"])])
    containers = sample_["containers"]

    def labels(c):
        return {"service": c["service"], "container": c["name"]}

    m.add("container_use_bytes", "gauge",
          "Container memory its limit cannot reclaim (anon, shmem and kernel memory; no page cache): the figure sized from.",
          [(labels(c), c.get("use")) for c in containers])
    m.add("container_usage_bytes", "gauge", "Container memory as docker stats shows it (usage less inactive file).",
          [(labels(c), c.get("usage")) for c in containers])
    m.add("container_anon_bytes", "gauge", "Container anonymous memory.", [(labels(c), c.get("anon")) for c in containers])
    m.add("container_limit_bytes", "gauge", "Container memory limit (absent when none).", [(labels(c), c.get("limit")) for c in containers])
    growth_by_name = dict((g["container"], g["bytes"]) for g in growth)
    m.add("container_growth_bytes", "gauge", "Container growth over the trend window (Theil-Sen).",
          [(labels(c), growth_by_name.get(c["name"])) for c in containers])
    m.add("check_timestamp_seconds", "gauge", "When this check ran.", [({}, float(sample_["time"]))])
    return m.text()


def webhook_body(fmt, host, notifications, events, sample_, trend):
    # An event (an OOM kill) is never "ok".
    lines = ["[%s] %s: %s" % (host, "RESOLVED" if n["level"] == "ok" else n["level"].upper(), n["message"])
             for n in notifications + events]
    if fmt == "slack":
        return {"text": "\n".join(lines)}
    relay = sample_["relay"]
    return {
        "host": host,
        "time": sample_["time"],
        "alerts": notifications,
        "events": events,
        "relay": {key: relay[key] for key in ("measures", "source", "release", "used", "total", "used_percent",
                                              "threshold", "threshold_bytes", "headroom", "would_reject")},
        "trend": {"growth_bytes_per_second": trend["slope"], "seconds_to_threshold": trend["seconds_to_threshold"]},
        "containers_listed": sample_["containers_listed"],
        "notes": sample_["notes"],
        "text": "\n".join(lines),
    }


class WebhookError(Exception):
    """The webhook could not be delivered; the message never holds the URL's userinfo, path or query."""


def webhook_request(url, data):
    """A POST request for ``url``; its ``user:password@`` goes into an Authorization header (basic)."""
    try:
        parts = urllib_parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise WebhookError("the webhook URL cannot be parsed")
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookError("the webhook URL must be http:// or https:// with a host")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise WebhookError("the webhook URL holds spaces or control characters")
    headers = {"Content-Type": "application/json", "User-Agent": "sentry-memory-alerts"}
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        credentials = "%s:%s" % (urllib_parse.unquote(parts.username), urllib_parse.unquote(parts.password or ""))
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    target = urllib_parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return urllib_request.Request(target, data=data, headers=headers), "%s://%s%s" % (
        parts.scheme, host, ":%d" % port if port else "")


def post_json(url, body, timeout, opener=None):
    """POST body as JSON; raises WebhookError on any failure, including a non-2xx answer.

    The error names the URL's scheme and host only: tokens live in the
    userinfo, the path and the query, and the journal is readable by more
    people than the 0600 file the URL is kept in.
    """
    opener = opener or urllib_request.urlopen
    request, shown = webhook_request(url, json.dumps(body).encode("utf-8"))
    try:
        response = opener(request, timeout=timeout)
        try:
            status = getattr(response, "status", None) or response.getcode()
        finally:
            response.close()
    except Exception as exc:  # pylint: disable=broad-except
        status = getattr(exc, "code", None)
        if not isinstance(status, int):
            text = str(exc)
            detail = type(exc).__name__ + (": %s" % text if text else "")
            raise WebhookError("POST to %s failed (%s)" % (shown, redact(detail, url)))
    if not 200 <= status < 300:
        raise WebhookError("POST to %s answered HTTP %s" % (shown, status))
    return status


def redact(text, url):
    """``text`` without any piece of ``url`` that may hold a secret."""
    try:
        parts = urllib_parse.urlsplit(url)
        secrets = [url, parts.netloc.rpartition("@")[0], parts.path, parts.query]
    except ValueError:
        secrets = [url]
    for secret in sorted((x for x in secrets if x and len(x) > 1), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


def read_secret(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace").strip()


# --- state -----------------------------------------------------------------

def state_shape_error(state):
    """Why a loaded state cannot be used, or None."""
    if not isinstance(state, dict) or state.get("version") != 1:
        return "not a version 1 state"
    alerts = state.get("alerts", {})
    if not isinstance(alerts, dict) or not all(
            isinstance(r, dict) and r.get("level") in LEVELS and isinstance(r.get("since"), (int, float))
            and isinstance(r.get("sent"), dict)
            and all(isinstance(v, dict) and v.get("level") in LEVELS for v in r["sent"].values())
            for r in alerts.values()):
        return "alerts of the wrong shape"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and isinstance(h.get("t"), (int, float)) and isinstance(h.get("relay"), (int, float))
            and isinstance(h.get("rk"), str) and isinstance(h.get("s"), dict) for h in history):
        return "history of the wrong shape"
    oom = state.get("oom")
    if oom is not None and not (isinstance(oom, dict) and isinstance(oom.get("kills"), (int, type(None)))):
        return "OOM record of the wrong shape"
    if not isinstance(state.get("pending_events", {}), dict):
        return "pending events of the wrong shape"
    return None


def read_own_state(path):
    """The state file's JSON value, or None where there is none.

    Raises host_program.UntrustedFileError for a file another user could have
    written (a symlink, not a regular file, another user's, group or others may
    write it) or one in a directory another user may change, where a checked
    file could be swapped before it is opened; ValueError when it does not parse.
    """
    directory = os.path.dirname(path) or "."
    if os.path.lexists(directory):
        try:
            sc.private_directory(directory)
        except sc.UnsafePathError as exc:
            raise hp.UntrustedFileError(path, "in a directory another user may change (%s)" % exc)
    return hp.read_own_json(path)


def load_state(path, journal):
    try:
        state = read_own_state(path)
        if state is None:
            return new_state()
        problem = state_shape_error(state)
        if problem:
            raise ValueError(problem)
        return state
    except hp.UntrustedFileError as exc:
        # A forged state could mark every alert as sent already and so silence it. The file is left as it
        # is (save_state will not replace it either) for an administrator to look at and remove.
        journal.log("error", "the state %s is not root's alone, so it is not read (%s): starting afresh; "
                             "no state is saved until it is removed or made root's alone" % (path, exc))
    except (IOError, OSError) as exc:
        journal.log("error", "cannot read the state %s (%s): starting afresh" % (path, exc))
    except ValueError as exc:
        journal.log("error", "the state %s is damaged (%s): starting afresh" % (path, exc))
    return new_state()


def new_state():
    return {"version": 1, "alerts": {}, "history": []}


def record_use_peaks(path, containers, now):
    """Add this sample's use to the history of peaks compose_limits plans from, kept as compose_limits keeps it;
    True when the file changed."""
    peaks = hm.read_peaks(path)
    problem = peaks is not None and hm.peaks_shape_error(peaks)
    if problem:
        raise hm.PeaksFileError("the history of peaks %s is damaged (%s); compose_limits_forget_peaks starts it afresh"
                                % (path, problem))
    return hm.write_peaks(path, hm.record_peaks(peaks, hm.use_mb_by_service(containers), now))


def save_state(path, state):
    # Only root may place files where root's state lives.
    sc.private_directory(os.path.dirname(path))
    # Nor is a state load_state refused replaced (rename would swap out a symlink or another user's file
    # without a trace): it stays for an administrator to look at. Root's own damaged state is replaced.
    try:
        read_own_state(path)
    except ValueError:
        pass
    except hp.UntrustedFileError as exc:
        raise sc.UnsafePathError("not replacing it: %s" % exc)
    hp.write_atomic(path, json.dumps(state, sort_keys=True, separators=(",", ":")), 0o600)


# --- one run ---------------------------------------------------------------

def run_once(config, journal, now=None, root="/", run=None, which=shutil.which, opener=None):
    """Sample, evaluate, report. Returns the number of outputs that failed."""
    now = time.time() if now is None else now
    installer = sc.installer_running(config["project_dir"], root)
    if installer is not None:
        # An install or upgrade stops and starts the stack on purpose: no
        # sample, no alert, no history point that would bend the trend.
        journal.log("notice", "install.sh is running in %s (pid %d): standing aside" % (config["project_dir"], installer))
        return 0
    state = load_state(config["state_file"], journal)
    sample_ = sample(config, now, root, run, which)
    levels = relay_levels(config, sample_["relay"])
    state["history"] = record(state.get("history", []), sample_, now, config)
    trend = relay_trend(state["history"], now, sample_["relay"], levels["reject"], config)
    growth = container_growth(state["history"], now, config)
    previous_levels = dict((k, v["level"]) for k, v in state.get("alerts", {}).items())
    alerts = evaluate(config, sample_, levels, trend, growth, previous_levels)
    update_alerts(state, alerts, now)
    events = oom_events(state, sample_)
    host = config["host"] or socket.getfqdn()
    failures = 0

    if config["journal"]:
        for note in sample_["notes"]:
            journal.log("notice", note)
        if config["journal_summary"]:
            journal.log("info", relay_summary(sample_["relay"], levels, trend_words(trend, growth, config)))
        for item in due(state, alerts, "journal", now, config["resend_interval_seconds"]):
            word = "resolved" if item["level"] == "ok" else item["level"]
            journal.log(item["level"] if item["level"] != "ok" else "notice", "%s %s: %s" % (item["key"], word, item["message"]))
            mark_sent(state, [item], "journal", now)
        for event in events:
            journal.log(event["level"], "%s: %s" % (event["key"], event["message"]))

    if config["metrics_file"]:
        failures += attempt(journal, "cannot write the metrics file %s" % config["metrics_file"], (IOError, OSError),
                            hp.write_atomic, config["metrics_file"], render_metrics(sample_, levels, trend, growth, alerts))

    if config["webhook_url_file"]:
        notifications = due(state, alerts, "webhook", now, config["resend_interval_seconds"])
        pending = queue_events(state, "webhook", events)
        if notifications or pending:
            try:
                url = read_secret(config["webhook_url_file"])
                post_json(url, webhook_body(config["webhook_format"], host, notifications, pending, sample_, trend),
                          config["webhook_timeout"], opener)
            except (WebhookError, IOError, OSError) as exc:
                # Any failure (DNS, TLS, HTTP, a bad URL) is the webhook's; the
                # alert stays due and is sent again on the next run.
                failures += 1
                journal.log("error", "webhook failed (%s); it will be retried on the next run" % exc)
            else:
                mark_sent(state, notifications, "webhook", now)
                clear_events(state, "webhook")
    if config["peaks_file"]:
        peak_errors = (hm.PeaksFileError,)
        failures += attempt(journal, "cannot record the peaks of use", peak_errors,
                            record_use_peaks, config["peaks_file"], sample_["containers"], now)
    return failures + attempt(journal, "cannot save the state %s" % config["state_file"], (IOError, OSError, sc.UnsafePathError),
                              save_state, config["state_file"], state)


def attempt(journal, what, errors, action, *args):
    """One output: 1 when it fails with one of ``errors`` (said in the journal), else 0. The other outputs still run."""
    try:
        action(*args)
    except errors as exc:
        journal.log("error", "%s: %s" % (what, exc))
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="Warn before Relay rejects events for lack of memory.")
    parser.add_argument("--config", default="/etc/sentry-selfhosted-memory/sentry-memory-alerts.json")
    args = parser.parse_args(argv)
    journal = hp.Journal()
    try:
        config = load_config(args.config)
        failures = run_once(config, journal)
    except (ConfigError, hm.MemoryReadError) as exc:
        journal.log("error", str(exc))
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
