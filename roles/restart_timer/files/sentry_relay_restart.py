# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restart self-hosted Sentry's Relay when it is due; run by sentry-relay-restart.service.

Installed by the sentry_selfhosted.memory.restart_timer role beside copies of
the collection's host_memory.py and sentry_compose.py, so the figures and the
restart are the collection's own. Standard library only. Every decision is
logged to the journal (stdout, with a syslog priority prefix) with its figures.

Exit status: 0 restarted, not needed, or stood aside; 1 the restart failed or
Relay was not ready in time; 3 Relay is not ready for a reason a restart does
not fix; 4 the restart rate limit is reached. Non-zero fails the unit, which
shows in ``systemctl --failed`` and starts the unit's OnFailure= hook.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import host_memory as hm  # noqa: E402 pylint: disable=wrong-import-position,import-error
import sentry_compose as sc  # noqa: E402 pylint: disable=wrong-import-position,import-error

MODES = ("always", "memory", "unhealthy")
DEFAULTS = {
    "project_dir": "/opt/sentry",
    "services": ["relay"],
    "full_stack": False,
    "modes": ["always"],
    "memory_threshold": 0.85,
    "relay_threshold": hm.DEFAULT_RELAY_THRESHOLD,
    "reload_nginx": True,
    "ready_timeout": 180,
    "max_restarts": 3,
    "rate_window": 86400,
    "state_file": "/var/lib/sentry-relay-restart/restarts.json",
    "lock_path": sc.DEFAULT_LOCK_PATH,
    "docker": "docker",
}

# sd-daemon(3) priority prefixes, read by journald from a service's stdout.
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6
EXIT_OK, EXIT_FAILED, EXIT_NOT_MEMORY, EXIT_RATE_LIMIT = 0, 1, 3, 4


def log(priority, message):
    print("<%d>%s" % (priority, message))
    sys.stdout.flush()


def run(argv):
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    except OSError as exc:
        # No docker CLI on the unit's PATH (snap Docker, for one): a clear line, not a traceback.
        return 127, "", "cannot run %s: %s" % (argv[0], exc)
    out, err = proc.communicate()
    return proc.returncode, out, err


def load_config(path):
    with open(path) as handle:
        config = dict(DEFAULTS, **json.load(handle))
    # Older ansible-core may write numbers and booleans as strings.
    for key in ("memory_threshold", "relay_threshold"):
        config[key] = float(config[key])
    for key in ("ready_timeout", "max_restarts", "rate_window"):
        config[key] = int(config[key])
    for key in ("full_stack", "reload_nginx"):
        config[key] = config[key] in (True, "True", "true", 1, "1")
    unknown = [m for m in config["modes"] if m not in MODES]
    if unknown or not config["modes"]:
        raise ValueError("modes must be a non-empty subset of %s, got %s" % (", ".join(MODES), config["modes"]))
    for key in ("memory_threshold", "relay_threshold"):
        if not 0 < float(config[key]) <= 1:
            raise ValueError("%s must be in (0, 1], got %s" % (key, config[key]))
    bad = [s for s in config["services"] if not sc.valid_service_name(s)]
    if bad:
        raise ValueError("not a compose service name: %s" % ", ".join(repr(s) for s in bad))
    return config


def describe_view(view):
    return "%s: used %d of %d bytes (%.2f%%), threshold %.2f%% (%d bytes), release %s, measured as %s" % (
        "over" if view["would_reject"] else "under", view["used"], view["total"], view["used_percent"],
        view["threshold"] * 100, view["threshold_bytes"], view["release"] or "unknown", view["source"])


def decide(modes, memory_view=None, ready=None, relay_view=None):
    """Whether to restart, as (restart, exit status, reason).

    ``memory_view`` is Relay's figure against the restart threshold (memory
    mode); ``ready`` the readiness probe's answer and ``relay_view`` the same
    figure against Relay's own threshold (unhealthy mode). Readiness also
    fails while ``web`` is down (Relay's auth probe), which a Relay restart
    does not fix: an unready Relay is restarted only when its memory probe is
    what fails.
    """
    if "always" in modes:
        return True, EXIT_OK, "mode always"
    if "memory" in modes and memory_view is not None and memory_view["would_reject"]:
        return True, EXIT_OK, "memory: Relay's figure is " + describe_view(memory_view)
    if "unhealthy" in modes and ready is False:
        if relay_view is not None and relay_view["would_reject"]:
            return True, EXIT_OK, "unhealthy: Relay is not ready and its memory probe fails, " + describe_view(relay_view)
        return False, EXIT_NOT_MEMORY, (
            "unhealthy: Relay is not ready but its memory probe passes (%s); a Relay restart would not fix this: "
            "check web, kafka and redis (`docker compose ps`, `docker compose logs relay`)"
            % (describe_view(relay_view) if relay_view else "figure unknown"))
    reasons = []
    if "memory" in modes and memory_view is not None:
        reasons.append("memory " + describe_view(memory_view))
    if "unhealthy" in modes and ready:
        reasons.append("Relay is ready")
    return False, EXIT_OK, "no restart needed: " + "; ".join(reasons)


def recent_restarts(state_file, window, now):
    try:
        with open(state_file) as handle:
            stamps = json.load(handle)
    except (IOError, OSError, ValueError):
        return []
    return [s for s in stamps if isinstance(s, (int, float)) and now - s < window]


def record_restart(state_file, stamps, now):
    directory = os.path.dirname(state_file)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = state_file + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(stamps + [now], handle)
    os.rename(tmp, state_file)


class Figures:
    """Relay's memory figure on this host, read with host_memory as memory_info does."""

    def __init__(self, config, release, root="/"):
        self.config = config
        self.release = release
        self.root = root

    def view(self, threshold):
        meminfo = hm.ProcfsBackend(self.root).meminfo()
        mode = hm.cgroup_mode(self.root)
        project = hm.checkout_env(self.config["project_dir"]).get("COMPOSE_PROJECT_NAME", hm.DEFAULT_COMPOSE_PROJECT)
        containers = hm.list_compose_containers(run, project, self.config["docker"])
        hm.container_memory(containers, mode, self.root)
        relay = next((c for c in containers if c["service"] == "relay" and "error" not in c), None)
        return hm.relay_view(meminfo, self.release, mode, relay, threshold)


def main(argv=None, root="/"):
    parser = argparse.ArgumentParser(description="Restart self-hosted Sentry's Relay when it is due.")
    parser.add_argument("--config", required=True, help="JSON written by the restart_timer role")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (IOError, OSError, ValueError) as exc:
        log(ERR, "cannot use %s: %s" % (args.config, exc))
        return EXIT_FAILED
    project_dir = config["project_dir"]
    if not sc.is_selfhosted_checkout(project_dir):
        log(ERR, "%s is not a self-hosted checkout (docker-compose.yml, .env and relay/ expected)" % project_dir)
        return EXIT_FAILED
    lock = sc.RestartLock(config["lock_path"])
    if not lock.acquire(wait=0):
        log(NOTICE, "another restart holds %s: standing aside" % config["lock_path"])
        return EXIT_OK
    try:
        return restart_when_due(config, root)
    except (sc.ComposeError, hm.MemoryReadError) as exc:
        log(ERR, "restart failed: %s" % exc)
        return EXIT_FAILED
    finally:
        lock.release()


def restart_when_due(config, root):
    release = hm.relay_release(hm.checkout_env(config["project_dir"]))
    compose = sc.SentryCompose(config["project_dir"], run, config["docker"])
    compose.version()
    restarter = sc.RelayRestart(compose, release, log=lambda message: log(INFO, message))
    running = restarter.running_services()
    services = running if config["full_stack"] else config["services"]
    reason = restarter.stand_aside_reason(services, running, root)
    if reason:
        log(NOTICE, "standing aside: %s" % reason)
        return EXIT_OK
    modes = config["modes"]
    figures = Figures(config, release, root)
    memory_view = ready = relay_view = None
    if "always" not in modes:
        if "memory" in modes:
            memory_view = figures.view(float(config["memory_threshold"]))
        if "unhealthy" in modes:
            ready, detail = restarter.probe()
            log(INFO, "readiness probe: %s" % ("ready" if ready else "not ready: %s" % detail))
            if not ready:
                relay_view = figures.view(float(config["relay_threshold"]))
    restart, status, why = decide(modes, memory_view, ready, relay_view)
    if not restart:
        log(ERR if status else INFO, why)
        return status
    now = time.time()
    stamps = recent_restarts(config["state_file"], config["rate_window"], now)
    if len(stamps) >= config["max_restarts"]:
        log(ERR, "restart rate limit reached: %d restarts in the last %d s (max %d); not restarting although %s"
            % (len(stamps), config["rate_window"], config["max_restarts"], why))
        return EXIT_RATE_LIMIT
    log(NOTICE, "restarting: %s" % why)
    steps = restarter.plan(services, running, config["reload_nginx"], wait_ready=True)
    record_restart(config["state_file"], stamps, now)
    done, ready = restarter.execute(steps, config["ready_timeout"])
    if ready is False:
        log(ERR, "Relay is not ready %d s after: %s" % (config["ready_timeout"], ", ".join(done)))
        return EXIT_FAILED
    log(NOTICE, "done: %s" % ", ".join(done))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
