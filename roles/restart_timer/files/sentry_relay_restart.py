# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restart self-hosted Sentry's Relay when it is due; run by sentry-relay-restart.service.

Installed by the sentry_selfhosted.memory.restart_timer role in
/usr/local/libexec/sentry-selfhosted-memory/ beside copies of the collection's
host_memory.py, sentry_compose.py and host_program.py (with its managed_file.py), so the
figures, the restart and the plumbing (commands, journal, configuration) are the
collection's own. Standard library only; Ansible need not be on the host.
Every decision is logged to the journal (stdout, with a syslog priority
prefix) with its figures.

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
import sys
import time

# The one import path of the host programs: the module_utils copies beside them.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import host_memory as hm  # noqa: E402 pylint: disable=wrong-import-position,import-error
import host_program as hp  # noqa: E402 pylint: disable=wrong-import-position,import-error
import sentry_compose as sc  # noqa: E402 pylint: disable=wrong-import-position,import-error
import sentry_checkout as ck  # noqa: E402 pylint: disable=wrong-import-position,import-error

MODES = ("always", "memory", "unhealthy")
# Every setting of the configuration: its shape (host_program.checked) and its default. A row that ends in a
# variable's name is set by the role from that variable, and its default is the role's: hacking/role_settings.py
# writes it from the role's meta/argument_specs.yml. A relay_threshold of None is Relay's own, read from the
# checkout's relay/config.yml on every run.
SETTINGS = {
    "project_dir": ("string", "/opt/sentry"),  # sentry_selfhosted_dir
    "services": ("strings", ["relay"]),  # restart_timer_services
    "full_stack": ("bool", False),  # restart_timer_full_stack
    "modes": ("strings", ["always"]),  # restart_timer_modes
    "memory_threshold": ("ratio", 0.85),  # restart_timer_memory_threshold
    "relay_threshold": ("ratio?", None),  # sentry_selfhosted_relay_threshold
    "reload_nginx": ("bool", True),
    "ready_timeout": ("positive", 180),  # restart_timer_ready_timeout
    "max_restarts": ("positive", 3),  # restart_timer_max_restarts
    "rate_window": ("positive", 86400),
    "state_file": ("string", "/var/lib/sentry-selfhosted-memory/relay-restarts.json"),
    "lock_path": ("string", sc.DEFAULT_LOCK_PATH),
    "docker": ("string", "docker"),  # sentry_selfhosted_docker
}
EXIT_OK, EXIT_FAILED, EXIT_NOT_MEMORY, EXIT_RATE_LIMIT = 0, 1, 3, 4
# A compose command of the restart (a full stack's restart included) ends well within this.
COMMAND_TIMEOUT = 900
ConfigError = hp.ConfigError


def log(level, message):
    hp.Journal().log(level, message)


def run(argv):
    return hp.run_command(argv, COMMAND_TIMEOUT)


def load_config(path):
    config = hp.make_config(hp.read_json(path), SETTINGS)
    unknown = [m for m in config["modes"] if m not in MODES]
    if unknown or not config["modes"]:
        raise ConfigError("modes must be a non-empty subset of %s, got %s" % (", ".join(MODES), config["modes"]))
    bad = [s for s in config["services"] if not sc.valid_service_name(s)]
    if bad or not config["services"]:
        raise ConfigError("services must be compose service names; not a compose service name: %s"
                          % ", ".join(repr(s) for s in bad or config["services"]))
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


class DamagedRecord(Exception):
    """The restart record exists but cannot be read as a list of times."""


def recent_restarts(state_file, window, now):
    """Times of the restarts within ``window`` seconds; raises DamagedRecord for a record of the wrong shape."""
    if not os.path.lexists(state_file):
        return []
    try:
        # Read as the restart lock is: in a directory only root can change (else a checked file could be swapped
        # before it is opened), and only a regular file of root's that no one else may write. One that others
        # could write could say "no restarts yet" and lift the rate limit; it counts as damaged.
        sc.private_directory(os.path.dirname(state_file) or ".")
        stamps = hp.read_own_json(state_file)
    except (IOError, OSError, ValueError, sc.UnsafePathError, hp.UntrustedFileError) as exc:
        raise DamagedRecord(str(exc))
    if not isinstance(stamps, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in stamps):
        raise DamagedRecord("not a list of times")
    return [s for s in stamps if now - s < window]


def record_restarts(state_file, stamps):
    """Write the record atomically, in a directory only root can change."""
    sc.private_directory(os.path.dirname(state_file))
    hp.write_atomic(state_file, json.dumps(stamps), 0o600)


def relay_figure(config, root, threshold):
    """Relay's figure from the collection's one Relay view; its notes go to the journal."""
    figure = ck.relay_figure(config["project_dir"], root, run, config["docker"], threshold=threshold)
    for note in figure["notes"]:
        log("warning", note)
    return figure["relay"]


def main(argv=None, root="/"):
    parser = argparse.ArgumentParser(description="Restart self-hosted Sentry's Relay when it is due.")
    parser.add_argument("--config", required=True, help="JSON written by the restart_timer role")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log("error", "cannot use %s: %s" % (args.config, exc))
        return EXIT_FAILED
    project_dir = config["project_dir"]
    if not ck.is_selfhosted_checkout(project_dir):
        log("error", "%s is not a self-hosted checkout (docker-compose.yml, .env and relay/ expected)" % project_dir)
        return EXIT_FAILED
    lock = sc.RestartLock(config["lock_path"])
    try:
        acquired = lock.acquire(wait=0)
    except sc.UnsafePathError as exc:
        log("error", "not restarting: %s" % exc)
        return EXIT_FAILED
    if not acquired:
        log("notice", "another restart holds %s: standing aside" % config["lock_path"])
        return EXIT_OK
    try:
        return restart_when_due(config, root)
    except (sc.ComposeError, hm.MemoryReadError, sc.UnsafePathError, OSError) as exc:
        log("error", "restart failed: %s" % exc)
        return EXIT_FAILED
    finally:
        lock.release()


def restart_when_due(config, root):
    notes = []
    release = ck.relay_release(ck.checkout_env(config["project_dir"], notes))
    for note in notes:
        log("warning", note)
    compose = sc.SentryCompose(config["project_dir"], run, config["docker"])
    compose.version()
    restarter = sc.RelayRestart(compose, release, log=lambda message: log("info", message))
    running = restarter.running_services()
    services = running if config["full_stack"] else config["services"]
    reason = restarter.stand_aside_reason(services, running, root)
    if reason:
        log("notice", "standing aside: %s" % reason)
        return EXIT_OK
    modes = config["modes"]
    memory_view = ready = relay_view = None
    if "always" not in modes:
        if "memory" in modes:
            memory_view = relay_figure(config, root, config["memory_threshold"])
        if "unhealthy" in modes:
            ready, detail = restarter.probe()
            log("info", "readiness probe: %s" % ("ready" if ready else "not ready: %s" % detail))
            if not ready:
                # Relay's own threshold (relay/config.yml), unless the configuration names one.
                relay_view = relay_figure(config, root, config["relay_threshold"])
    restart, status, why = decide(modes, memory_view, ready, relay_view)
    if not restart:
        log("error" if status else "info", why)
        return status
    now = time.time()
    try:
        stamps = recent_restarts(config["state_file"], config["rate_window"], now)
    except DamagedRecord as exc:
        # A damaged record must not reset the rate limit: it counts as a full
        # window of restarts, rewritten so that the limit lifts when the window ends.
        log("error", "the restart record %s is damaged (%s): counted as %d restarts now; not restarting although %s"
            % (config["state_file"], exc, config["max_restarts"], why))
        if os.path.lexists(config["state_file"]) and not os.path.isdir(config["state_file"]):
            os.unlink(config["state_file"])
        record_restarts(config["state_file"], [now] * config["max_restarts"])
        return EXIT_RATE_LIMIT
    if len(stamps) >= config["max_restarts"]:
        log("error", "restart rate limit reached: %d restarts in the last %d s (max %d); not restarting although %s"
            % (len(stamps), config["rate_window"], config["max_restarts"], why))
        return EXIT_RATE_LIMIT
    log("notice", "restarting: %s" % why)
    steps = restarter.plan(services, running, config["reload_nginx"], wait_ready=True)
    record_restarts(config["state_file"], stamps + [now])
    done, ready = restarter.execute(steps, config["ready_timeout"])
    if ready is False:
        log("error", "Relay is not ready %d s after: %s" % (config["ready_timeout"], ", ".join(done)))
        return EXIT_FAILED
    log("notice", "done: %s" % ", ".join(done))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
