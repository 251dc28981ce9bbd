# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory-leak chaos scenario, with and without the collection.

A miniature self-hosted project (tests/docker/chaos) runs on the docker
stage's private engine inside a parent memory cgroup that stands for "the
host" (2 GiB, no swap around it). A `leaker` service grows steadily; a
stand-in of Relay's memory rule (NOT Relay: chaos/relay.py) answers 503 once
the parent's figures cross Relay 24.8's threshold; a load driver sends
envelopes for a bounded time and records every 503.

One arm runs the project as it comes (no limits, no timers). The other first
applies what the `site` playbook would do to it (compose_limits with apply
on, relay_health with apply off), then runs memory_alerts' check program and
restart_timer's restart program every few seconds, called directly: the
engine's host here has no systemd to run their timers.

Used by tests/docker/test_chaos.py (short run) and bench/chaos.py (longer run,
through tests/docker/run). Needs the engine tests/docker/run starts, root (it
makes and removes the cgroup) and a cgroup v1 memory controller.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

from conftest import HERE, Stack, docker, run_playbook
# The installed copy (conftest puts it on the path), as the modules use it.
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm  # pylint: disable=wrong-import-order

CHAOS = os.path.join(HERE, "chaos")
MEMORY_ROOT = "/sys/fs/cgroup/memory"
CGROUP_PREFIX = "sentry-chaos-"
MIB = 1024 ** 2
PARENT_MB = 2048
RELAY_THRESHOLD = 0.95
# memory_alerts' default warning ratio of Relay's total.
WARNING_RATIO = 0.85
ALERTS_EVERY = 2.0
RESTART_EVERY = 6.0
SAMPLE_EVERY = 0.25
# What `site` would be given for this project: a 2 GiB "host" that holds
# only the project (the reserve is for the engine's shims, outside the parent),
# and table rows for its small services (the default table sizes real Sentry).
SITE_VARS = {
    "compose_limits_total_memory_mb": PARENT_MB,
    "compose_limits_reserve_mb": 512,
    "compose_limits_apply": True,
    "compose_limits_backup": False,
    "compose_limits_table": {
        "web": {"min": 256, "typical": 210, "max": 384},
        "worker": {"min": 256, "typical": 210, "max": 384},
        "snuba-*": {"min": 128, "typical": 110, "max": 256},
        "cron": {"min": 64, "typical": 12, "max": 128},
        "relay": {"min": 128, "typical": 40, "max": 256},
    },
    "relay_health_apply": False,
    "relay_health_backup": False,
}


def installed(path):
    """A file of the installed collection (hacking/env), as the roles install it."""
    return os.path.join(os.environ["SENTRY_MEMORY_COLLECTIONS"], "ansible_collections", "sentry_selfhosted", "memory", path)


# --- the parent cgroup -------------------------------------------------------

def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def cgroup_dirs(name):
    """The directories of this cgroup in every v1 hierarchy (docker makes the others)."""
    return [d for d in glob.glob("/sys/fs/cgroup/*/%s" % name) if os.path.isdir(d)]


def remove_cgroup(name, timeout=30):
    """Remove the cgroup once nothing is in it; children first. Returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for top in cgroup_dirs(name):
            for path, dirs, _files in sorted(os.walk(top), key=lambda item: -len(item[0])):
                del dirs[:]
                try:
                    os.rmdir(path)
                except OSError:
                    left.append(path)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def remove_stale_cgroups():
    """Parents an earlier run left when it was killed outright (its PID is gone)."""
    for path in glob.glob("/sys/fs/cgroup/*/%s*" % CGROUP_PREFIX):
        pid = os.path.basename(path)[len(CGROUP_PREFIX):].split("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            remove_cgroup(os.path.basename(path), timeout=0)


def make_parent(name):
    """The memory cgroup that stands for the host: PARENT_MB, and no swap around it."""
    path = os.path.join(MEMORY_ROOT, name)
    os.mkdir(path)
    limit = str(PARENT_MB * MIB)
    with open(os.path.join(path, "memory.limit_in_bytes"), "w") as handle:
        handle.write(limit)
    memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
    if os.path.exists(memsw):
        with open(memsw, "w") as handle:
            handle.write(limit)
    return path


# --- one arm -----------------------------------------------------------------

class Arm:
    """One run of the scenario in its own parent cgroup and checkout."""

    def __init__(self, label, workdir, seconds, leak_mb_per_s, seed, rate):
        self.label = label
        self.workdir = workdir
        self.seconds = seconds
        self.leak = leak_mb_per_s
        self.seed = seed
        self.rate = rate
        self.cgroup = "%s%d-%s" % (CGROUP_PREFIX, os.getpid(), label)
        self.parent = None
        self.stack = None
        self.events = []  # (seconds since go, what)
        self.samples = []  # (seconds since go, used, total)
        self.start = None
        self.lock = threading.Lock()

    def note(self, what):
        with self.lock:
            self.events.append((round(time.time() - self.start, 2) if self.start else None, what))

    # setup and teardown ------------------------------------------------------

    def checkout(self):
        directory = os.path.join(self.workdir, "sentry-%s" % self.label)
        shutil.copytree(CHAOS, directory)
        shutil.copytree(os.path.join(HERE, "project", "stand-ins"), os.path.join(directory, "stand-ins"))
        shutil.copytree(os.path.join(HERE, "project", "relay"), os.path.join(directory, "relay"))
        shutil.copy(installed("plugins/module_utils/host_memory.py"), os.path.join(directory, "chaos"))
        with open(os.path.join(directory, ".env"), "a") as handle:
            handle.write("CHAOS_CGROUP_PARENT=%s\nCHAOS_LEAK_MB_PER_S=%s\nCHAOS_SEED=%d\n" % (self.cgroup, self.leak, self.seed))
        os.makedirs(os.path.join(directory, "state"))
        return Stack(directory)

    def setup(self):
        remove_stale_cgroups()
        self.parent = make_parent(self.cgroup)
        self.stack = self.checkout()
        self.stack.up()
        # Every container must be in the parent, or its limit proves nothing.
        for service, container in self.stack.containers().items():
            memory = hm.cgroup_dir_of_pid(container["State"]["Pid"], "v1")
            if not memory.startswith(self.parent + "/"):
                raise AssertionError("%s is not in the parent cgroup %s: %s" % (service, self.parent, memory))

    def teardown(self):
        """Containers first, then the cgroup (rmdir only once they are gone). Returns what is left."""
        if self.stack is not None:
            self.stack.down()
        return remove_cgroup(self.cgroup)

    # the collection ------------------------------------------------------------

    def apply_collection(self):
        """compose_limits (apply on) and relay_health (apply off), from the installed collection."""
        directory = self.stack.dir
        play = [{
            "name": "What site does to the project's services", "hosts": "localhost", "gather_facts": False,
            "vars": dict(SITE_VARS, sentry_selfhosted_dir=directory,
                         compose_limits_peaks_file=os.path.join(self.workdir, "peaks-%s.json" % self.label)),
            "roles": ["sentry_selfhosted.memory.compose_limits", "sentry_selfhosted.memory.relay_health"],
        }]
        returncode, report = run_playbook(os.path.join(self.workdir, "site-%s.yml" % self.label), play)
        if returncode != 0:
            raise AssertionError("the collection's roles failed (rc=%s): %s" % (returncode, json.dumps(report)[-4000:]))
        self.stack.up()

    def programs(self):
        """memory_alerts' check program and restart_timer's restart program, each with host_memory.py
        (and sentry_compose.py) beside it as the roles install them, and a config in the work dir."""
        base = os.path.join(self.workdir, "programs-%s" % self.label)
        os.makedirs(base)
        for source in ("roles/memory_alerts/files/sentry_memory_alerts.py", "roles/restart_timer/files/sentry_relay_restart.py",
                       "plugins/module_utils/host_memory.py", "plugins/module_utils/sentry_compose.py"):
            shutil.copy(installed(source), base)
        alerts = {"project_dir": self.stack.dir, "host": "chaos", "relay_threshold": RELAY_THRESHOLD,
                  "warning_ratio": WARNING_RATIO, "critical_ratio": 0.90, "service_warning_ratio": 0.9,
                  "state_file": os.path.join(base, "alerts-state.json"), "journal": True, "journal_summary": False,
                  "metrics_file": None, "webhook_url_file": None}
        restart = {"project_dir": self.stack.dir, "modes": ["memory"], "memory_threshold": WARNING_RATIO,
                   "relay_threshold": RELAY_THRESHOLD, "ready_timeout": 30,
                   "lock_path": os.path.join(base, "restart.lock"), "state_file": os.path.join(base, "restarts.json")}
        commands = {}
        for name, program, config in (("alerts", "sentry_memory_alerts.py", alerts), ("restart", "sentry_relay_restart.py", restart)):
            path = os.path.join(base, "%s.json" % name)
            with open(path, "w") as handle:
                json.dump(config, handle)
            commands[name] = [sys.executable, os.path.join(base, program), "--config", path]
        return commands

    def run_timers(self, commands, stop):
        """The timers' work on a short schedule: alerts every ALERTS_EVERY s, restart every RESTART_EVERY s."""
        next_restart = time.monotonic()
        while not stop.is_set():
            began = time.monotonic()
            due = [("alerts", commands["alerts"])]
            if began >= next_restart:
                due.append(("restart", commands["restart"]))
                next_restart = began + RESTART_EVERY
            for name, argv in due:
                proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
                for line in (proc.stdout + proc.stderr).splitlines():
                    self.note("%s: %s" % (name, line))
                if proc.returncode not in (0,):
                    self.note("%s: exit %s" % (name, proc.returncode))
            stop.wait(max(0.0, ALERTS_EVERY - (time.monotonic() - began)))

    # the run -----------------------------------------------------------------

    def leaker(self):
        return self.stack.inspect("leaker")

    def run(self, with_collection):
        if with_collection:
            self.apply_collection()
            commands = self.programs()
        limits = dict((service, c["HostConfig"]["Memory"] // MIB) for service, c in self.stack.containers().items())
        restarts_before = self.leaker()["RestartCount"]
        load = subprocess.Popen(["docker", "compose", "--ansi", "never", "exec", "-T", "nginx", "python3", "/chaos/load.py",
                                 "--seconds", str(self.seconds), "--rate", str(self.rate), "--seed", str(self.seed)],
                                cwd=self.stack.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        open(os.path.join(self.stack.state, "go"), "w").close()
        self.start = time.time()
        stop = threading.Event()
        timers = None
        if with_collection:
            timers = threading.Thread(target=self.run_timers, args=(commands, stop))
            timers.start()
        deadline = time.monotonic() + self.seconds + 30
        try:
            while load.poll() is None and time.monotonic() < deadline:
                # Relay's figures, as the stand-in reads them (host_memory: total_rss of the parent, its limit).
                figures = hm.read_cgroup_memory(self.parent, 1)
                self.samples.append((round(time.time() - self.start, 2), figures["anon"], figures["limit"]))
                time.sleep(SAMPLE_EVERY)
        finally:
            stop.set()
            if timers is not None:
                timers.join(90)
            if load.poll() is None:
                load.kill()
        out, err = load.communicate()
        if load.returncode != 0:
            raise AssertionError("the load driver failed (rc=%s): %s" % (load.returncode, err or out))
        summary = json.loads(out.strip().splitlines()[-1])
        stats = json.loads(self.stack.compose("exec", "-T", "nginx", "python3", "-c",
                                              "import urllib.request; print(urllib.request.urlopen('http://relay:3000/stats').read().decode())"
                                              ).stdout)
        return self.report(with_collection, summary, stats, limits, self.oom_events(),
                           self.leaker()["RestartCount"] - restarts_before)

    def oom_events(self):
        """The engine's OOM events of the project's containers during the run: [(seconds since go, service)].

        The memory cgroup's own oom_kill counter is per container cgroup on v1
        (not summed into the parent) and restarts with each container start;
        the engine's events keep every one.
        """
        proc = docker("events", "--since", "%.3f" % self.start, "--until", "%.3f" % time.time(),
                      "--filter", "event=oom", "--filter", "label=com.docker.compose.project=%s" % self.stack_project(),
                      "--format", "{{json .}}")
        found = []
        for line in proc.stdout.splitlines():
            event = json.loads(line)
            when = event.get("timeNano", event.get("time", 0) * 10 ** 9) / 1e9
            found.append((round(when - self.start, 2), event["Actor"]["Attributes"].get("com.docker.compose.service")))
        return sorted(found)

    def stack_project(self):
        return self.stack.containers()["relay"]["Config"]["Labels"]["com.docker.compose.project"]

    def report(self, with_collection, summary, stats, limits, ooms, leaker_restarts):
        def first_time(predicate):
            return next((t for t, used, total in self.samples if predicate(used, total)), None)

        rejected = [round(t - self.start, 2) for t in summary["rejected"]]
        warnings = [t for t, what in self.events
                    if what.startswith("alerts: warning:") or what.startswith("alerts: critical:")]
        relay_restarts = [t for t, what in self.events if what.startswith("restart:") and "restarting relay" in what]
        peak = max(used / float(total) for t, used, total in self.samples) if self.samples else None
        return {
            "arm": self.label,
            "with_collection": with_collection,
            "seconds": self.seconds,
            "leak_mb_per_s": self.leak,
            "seed": self.seed,
            "envelopes_sent": summary["sent"],
            "envelopes_ok": summary["ok"],
            "load_errors": len(summary["errors"]),
            "rejected": len(rejected),
            "relay_counted_rejected": stats["rejected"],
            "first_503_s": rejected[0] if rejected else None,
            "peak_used_percent": round(100 * peak, 1) if peak is not None else None,
            "warning_ratio_crossed_s": first_time(lambda used, total: used >= WARNING_RATIO * total),
            "threshold_crossed_s": first_time(lambda used, total: used >= RELAY_THRESHOLD * total),
            "first_warning_s": warnings[0] if warnings else None,
            "first_warning": next((what for t, what in self.events if t in warnings[:1]), None),
            "leaker_ooms": len([s for t, s in ooms if s == "leaker"]),
            "oom_kills": dict((service, len([s for t, s in ooms if s == service])) for service in sorted(set(s for t, s in ooms))),
            "leaker_first_oom_s": next((t for t, s in ooms if s == "leaker"), None),
            "leaker_restarts": leaker_restarts,
            "relay_restarts_by_program": len(relay_restarts),
            "contained_by": contained_by(ooms, leaker_restarts, relay_restarts, limits.get("leaker")),
            "limits_mb": limits,
            "events": self.events,
        }


def contained_by(ooms, leaker_restarts, relay_restarts, leaker_limit_mb):
    """How the leak was stopped, in words."""
    ways = []
    killed = any(s == "leaker" for t, s in ooms)
    if killed and leaker_limit_mb:
        ways.append("leaker OOM-killed at its own %d MiB limit, restarted by its restart policy" % leaker_limit_mb)
    elif killed:
        ways.append("leaker OOM-killed only when the whole parent (the host) was full, restarted by its restart policy")
    elif leaker_restarts:
        ways.append("leaker restarted %d times (no OOM event)" % leaker_restarts)
    if relay_restarts:
        ways.append("relay restarted by restart_timer's program")
    return "; ".join(ways) or "not contained"


def run_arm(label, with_collection, workdir, seconds, leak_mb_per_s, seed, rate):
    """Run one arm and clean up after it, whatever happens; returns its report."""
    arm = Arm(label, workdir, seconds, leak_mb_per_s, seed, rate)
    result = None
    try:
        arm.setup()
        result = arm.run(with_collection)
    finally:
        left = arm.teardown()
        if left:
            raise AssertionError("the parent cgroup could not be removed: %s" % ", ".join(left))
    return result


def run_both(workdir, seconds, leak_mb_per_s, seed, rate):
    docker("version")
    return [run_arm("without", False, workdir, seconds, leak_mb_per_s, seed, rate),
            run_arm("with", True, workdir, seconds, leak_mb_per_s, seed, rate)]


ROWS = [
    ("envelopes sent", "envelopes_sent"),
    ("503 answers", "rejected"),
    ("time to first 503 (s)", "first_503_s"),
    ("peak used % of the parent (Relay's figure)", "peak_used_percent"),
    ("parent crossed 85% (warning ratio) at (s)", "warning_ratio_crossed_s"),
    ("parent crossed 95% (Relay's threshold) at (s)", "threshold_crossed_s"),
    ("first early warning (memory_alerts) at (s)", "first_warning_s"),
    ("OOM kills of the leaker (engine's oom events)", "leaker_ooms"),
    ("first OOM kill of the leaker at (s)", "leaker_first_oom_s"),
    ("leaker restarts (restart: unless-stopped)", "leaker_restarts"),
    ("relay restarts by restart_timer's program", "relay_restarts_by_program"),
]


def table(results):
    """The side-by-side table of the two arms."""
    width = max(len(label) for label, key in ROWS) + 2
    lines = ["%-*s %14s %14s" % (width, "", "without", "with the collection")]
    for label, key in ROWS:
        cells = ["-" if r.get(key) is None else str(r[key]) for r in results]
        lines.append("%-*s %14s %14s" % (width, label, cells[0], cells[1]))
    with_arm = results[1]
    for result in results:
        lines.append("contained (%s): %s" % (result["arm"], result["contained_by"]))
    lines.append("leaker limit with the collection: %s MiB (of %s MiB); first warning: %s"
                 % (with_arm["limits_mb"].get("leaker"), PARENT_MB, with_arm["first_warning"]))
    return "\n".join(lines)
