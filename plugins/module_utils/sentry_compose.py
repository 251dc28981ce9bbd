# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way the collection calls Docker Compose on a self-hosted checkout.

Standard library only, like host_memory: modules pass host_program.run_command
as ``run`` with a ``timeout`` (AnsibleModule.run_command has no time limit), and
the programs installed on hosts pass a subprocess wrapper that applies its own.
Every call is an argv list; nothing is ever given to a shell.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

COMPOSE_FILE = "docker-compose.yml"
OVERRIDE_FILE = "docker-compose.override.yml"
# A checkout's env files, in the order Compose reads them (a later file wins): install.sh's order.
ENV_FILES = (".env", ".env.custom")
# Compose service names: what `docker compose` itself accepts.
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")

# Seconds a Docker or Compose call may take (the modules' docker_timeout): ps, inspect, config, version and
# exec answer within seconds on a healthy daemon; one stuck on a hung daemon or plugin never answers.
DOCKER_TIMEOUT = 60
# At least this long for calls that stop and start containers: `up -d` recreating every service of a full
# stack, or restarting them all, waits out each one's stop grace period. The restart program allows the same.
RECREATE_TIMEOUT = 900
# What host_program.run_command (like timeout(1)) answers for a command that did not end in time.
TIMED_OUT = 124


class ComposeError(Exception):
    """A compose command failed or its answer could not be used."""


class ComposeTimeout(ComposeError):
    """A docker or compose command did not end within its time limit (and was stopped)."""

    def __init__(self, argv, limit):
        super(ComposeTimeout, self).__init__(
            "`%s` did not end within %s s and was stopped; the Docker daemon or its Compose plugin may be stuck "
            "(the modules' docker_timeout option sets the limit)" % (" ".join(argv), limit))
        self.argv = argv
        self.limit = limit


class ComposeAnswerError(ComposeError):
    """A compose command ended well but its answer is not what it always prints (truncated, not JSON, wrong shape)."""


# Docker failing, not the checkout: reading it another way (without the collection's lines) cannot help.
DOCKER_FAULTS = (ComposeTimeout, ComposeAnswerError)


def valid_service_name(name):
    return bool(SERVICE_NAME.match(name or ""))


class SentryCompose:
    """docker compose in a self-hosted checkout, with upstream's env files.

    install.sh hands compose ``.env.custom`` when it exists, after exporting
    .env.custom's values over .env's; ``--env-file .env --env-file .env.custom``
    gives compose the same merged values (a later file wins).
    """

    def __init__(self, project_dir, run, docker="docker", timeout=None):
        """``timeout`` None: ``run(argv)`` applies its own time limit (the host programs' wrappers do).
        Seconds: ``run(argv, limit)`` is host_program.run_command's shape, and this class decides each call's
        limit from them (time_limit) and turns a call that ran out of time into ComposeTimeout."""
        self.project_dir = project_dir
        self.run = run
        self.docker = docker
        self.timeout = timeout

    def time_limit(self, recreates=False):
        """Seconds one call may take: ``timeout``, and at least RECREATE_TIMEOUT when it stops and starts containers."""
        if self.timeout is None:
            return None
        return max(self.timeout, RECREATE_TIMEOUT) if recreates else self.timeout

    def run_docker(self, argv, recreates=False):
        """Run any docker argv with its time limit: (rc, stdout, stderr), or ComposeTimeout.

        The ``run`` modules hand sentry_checkout.list_compose_containers and detect_engine.
        """
        limit = self.time_limit(recreates)
        if limit is None:
            return self.run(argv)
        rc, out, err = self.run(argv, limit)
        if rc == TIMED_OUT:
            raise ComposeTimeout(argv, limit)
        return rc, out, err

    def env_files(self):
        return [os.path.join(self.project_dir, n) for n in ENV_FILES if os.path.exists(os.path.join(self.project_dir, n))]

    def argv(self, *args, **kwargs):
        """The full argv of a compose call; ``files`` replaces the default file pair."""
        argv = [self.docker, "compose", "--ansi", "never", "--project-directory", self.project_dir]
        for env_file in self.env_files():
            argv += ["--env-file", env_file]
        for compose_file in kwargs.get("files") or []:
            argv += ["-f", compose_file]
        return argv + list(args)

    def call(self, *args, **kwargs):
        """Run a compose command; raise ComposeError with its output when it fails.

        ``recreates`` marks a command that stops and starts containers (a longer time limit).
        """
        argv = self.argv(*args, files=kwargs.get("files"))
        rc, out, err = self.run_docker(argv, kwargs.get("recreates", False))
        if rc != 0:
            raise ComposeError("%s failed (rc=%s): %s" % (" ".join(argv[1:]), rc, (err or out).strip()))
        return out

    def version(self):
        """Compose's version as a tuple; refuses Compose v1, which cannot run self-hosted."""
        out = self.run_docker([self.docker, "compose", "version", "--short"])
        rc, text = out[0], (out[1] or "").strip()
        match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text)
        if rc != 0 or not match:
            raise ComposeError("`%s compose version` did not answer with a version (rc=%s): %s"
                               % (self.docker, rc, (out[2] or text).strip()))
        version = tuple(int(p) for p in match.groups())
        if version < (2, 0, 0):
            raise ComposeError("Docker Compose %s is v1; self-hosted Sentry and this collection need Compose v2" % text)
        return version

    def config(self, files=None):
        """The merged project as compose resolves it (profiles, env, override).

        Every reader indexes the answer as an object of service objects; anything else (a list, a string, null,
        truncated text) is a ComposeAnswerError naming the command, not an AttributeError or a skewed reading.
        """
        args = ("config", "--format", "json")
        out = self.call(*args, files=files)
        try:
            config = json.loads(out or "")
        except ValueError:
            config = None
        services = config.get("services", {}) if isinstance(config, dict) else None
        if not isinstance(services, dict) or not all(isinstance(s, dict) for s in services.values()):
            raise ComposeAnswerError("`docker compose %s` in %s did not answer with a JSON object of services: %.200r"
                                     % (" ".join(args), self.project_dir, out))
        return config

    def services(self, files=None):
        """Services of the active profiles, in compose's order."""
        return [s for s in self.call("config", "--services", files=files).split() if s]

    def up_no_deps(self, services):
        """Recreate just these services (a changed limit needs a new container)."""
        if services:
            self.call("up", "-d", "--no-deps", *self._checked(services), recreates=True)

    def restart(self, services):
        self.call("restart", *self._checked(services), recreates=True)

    def exec_in(self, service, *command):
        """Run a command in a service's container, without a terminal (-T)."""
        return self.call("exec", "-T", self._checked([service])[0], *command)

    def reload_nginx(self):
        """nginx resolves relay once at start; after relay is recreated it must reload (self-hosted #3638)."""
        self.exec_in("nginx", "nginx", "-s", "reload")

    @staticmethod
    def _checked(services):
        bad = [s for s in services if not valid_service_name(s)]
        if bad:
            raise ComposeError("not a compose service name: %s" % ", ".join(repr(s) for s in bad))
        return list(services)


# --- restarts (restart_timer role, relay_restart module) ---------------------
# The restart action lives here once: the relay_restart module and the restart
# program the restart_timer role installs on hosts both call RelayRestart.

RELAY_PORT = 3000
RELAY_READY_URL = "http://relay:%d/api/relay/healthcheck/ready/" % RELAY_PORT
# `relay healthcheck` is in the relay image from this release on.
RELAY_HEALTHCHECK_CLI_SINCE = (25, 8, 0)
# In a root-owned 0700 directory: in the world-writable /run/lock any user
# could pre-create the file and make root's restarts fail or stand aside.
DEFAULT_LOCK_PATH = "/run/sentry-selfhosted-memory/restart.lock"


def nginx_follows_relay(config):
    """Whether compose restarts nginx by itself when relay restarts.

    From 25.x self-hosted declares ``depends_on: relay: restart: true`` on
    nginx, so ``docker compose restart relay`` restarts nginx too and nginx
    resolves relay afresh; before that (24.x) nginx keeps relay's old address
    until ``nginx -s reload``. ``config`` is ``docker compose config`` as JSON.
    """
    nginx = (config.get("services") or {}).get("nginx") or {}
    depends_on = nginx.get("depends_on") or {}
    if isinstance(depends_on, list):
        return False
    return bool((depends_on.get("relay") or {}).get("restart"))


def readiness_argv(release):
    """The command (service, argv) that asks Relay whether it is ready.

    Relay 25.8.0 and later carry ``/bin/relay healthcheck`` (the mode is
    passed: its default changed between releases; the image is distroless,
    with no curl or wget). Older images have no client, so
    nginx's busybox wget asks relay over the compose network; it exits
    non-zero on the 503 an unready Relay answers.
    """
    if release is not None and tuple(release) >= RELAY_HEALTHCHECK_CLI_SINCE:
        return "relay", ["/bin/relay", "healthcheck", "--mode", "ready"]
    return "nginx", ["wget", "-q", "-O", "/dev/null", "-T", "5", RELAY_READY_URL]


def _proc_uids(proc_dir):
    """Real and effective uid of a process from its status file, or None."""
    try:
        with open(os.path.join(proc_dir, "status"), "rb") as handle:
            for line in handle.read().decode("ascii", "replace").splitlines():
                if line.startswith("Uid:"):
                    fields = line.split()
                    return int(fields[1]), int(fields[2])
    except (IOError, OSError, IndexError, ValueError):
        pass
    return None


def _owned_by(path, uid):
    try:
        return os.stat(path).st_uid == uid
    except OSError:
        return False


def installer_running(project_dir, root="/", trusted_uid=0):
    """The PID of an ``install.sh`` running in this checkout, or None.

    A restart during an install or upgrade would start containers the
    installer has stopped on purpose. Found from /proc: a process whose argv
    names install.sh and whose working directory is the checkout. Only
    evidence no other user can forge counts: the process runs as
    ``trusted_uid`` (root), and the checkout and the named script belong to
    it; otherwise any local user could make root's programs stand aside by
    starting a process named after the checkout's install.sh.
    """
    proc = os.path.join(root, "proc")
    want = os.path.realpath(project_dir)
    if not _owned_by(want, trusted_uid):
        return None
    try:
        entries = os.listdir(proc)
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
        except (IOError, OSError):
            continue
        scripts = [a for a in argv[:3] if os.path.basename(a) == "install.sh"]
        if not scripts or _proc_uids(os.path.join(proc, entry)) != (trusted_uid, trusted_uid):
            continue
        try:
            cwd = os.path.realpath(os.readlink(os.path.join(proc, entry, "cwd")))
        except OSError:
            cwd = None
        for script in scripts:
            path = os.path.realpath(script if os.path.isabs(script) else os.path.join(cwd or "/nonexistent", script))
            if os.path.dirname(path) == want and _owned_by(path, trusted_uid):
                return int(entry)
    return None


class UnsafePathError(Exception):
    """A lock or state path that another user could control."""


def private_directory(path, mode=0o700):
    """Make ``path`` (and missing parents) a directory only its owner can change, and check it is.

    Refuses a symlink, a directory of another user, or one that group or
    others may write: a root program must not keep locks or state where
    another user can place files.
    """
    import stat
    if not os.path.lexists(path):
        os.makedirs(path, mode)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError("%s is not a directory (a symlink or file is refused)" % path)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise UnsafePathError("%s belongs to uid %d with mode %04o; it must belong to uid %d and be writable by it alone"
                              % (path, info.st_uid, stat.S_IMODE(info.st_mode), os.geteuid()))
    return path


def open_private(path, flags, mode=0o600):
    """os.open in a private_directory(), never through a symlink; refuses a file of another user."""
    import stat
    private_directory(os.path.dirname(path) or ".")
    fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePathError("%s is not a regular file of uid %d" % (path, os.geteuid()))
    return fd


class RestartLock:
    """An exclusive flock shared by every restart on the host (timer and manual runs)."""

    def __init__(self, path=DEFAULT_LOCK_PATH):
        self.path = path
        self.handle = None

    def acquire(self, wait=0, sleep=None, clock=None):
        """Take the lock, waiting up to ``wait`` seconds; False when another restart holds it.

        Raises UnsafePathError when the lock's directory or file could be
        another user's (see private_directory).
        """
        import fcntl
        import time
        sleep = sleep or time.sleep
        clock = clock or time.monotonic
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise UnsafePathError("cannot open the restart lock %s: %s" % (self.path, exc))
        self.handle = os.fdopen(fd, "r+")
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except (IOError, OSError):
                if clock() >= deadline:
                    self.handle.close()
                    self.handle = None
                    return False
                sleep(1)

    def release(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class RelayRestart:
    """Restart services of a checkout, put nginx back in touch with Relay, wait for readiness.

    ``release`` is Relay's release tuple (sentry_checkout.relay_release) or None.
    ``log`` receives one line per step. Services that are not running are
    left alone: ``docker compose restart`` would start them, and a stopped
    service was stopped by someone.
    """

    def __init__(self, compose, release, log=None, sleep=None, clock=None):
        import time
        self.compose = compose
        self.release = release
        self.log = log or (lambda message: None)
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.done = []

    def running_services(self):
        return [s for s in self.compose.call("ps", "--status", "running", "--services").split() if s]

    def stand_aside_reason(self, services, running, root="/"):
        """Why no restart may happen now (install.sh running, stack down), or None."""
        pid = installer_running(self.compose.project_dir, root)
        if pid is not None:
            return "install.sh is running in %s (pid %d)" % (self.compose.project_dir, pid)
        if not any(s in running for s in services):
            return "none of %s is running (the stack is down on purpose or not installed)" % ", ".join(services)
        return None

    def plan(self, services, running, reload_nginx=True, wait_ready=True):
        """The steps a restart of ``services`` takes, in order, as (action, argument) pairs.

        ``running`` is running_services(); only those are restarted (see the class).
        """
        SentryCompose._checked(services)
        targets = [s for s in services if s in running]
        steps = []
        if targets:
            steps.append(("restart", targets))
        relay_restarted = "relay" in targets
        if relay_restarted and reload_nginx and "nginx" in running and "nginx" not in targets:
            if not nginx_follows_relay(self.compose.config()):
                steps.append(("reload_nginx", None))
        if wait_ready and "relay" in running:
            steps.append(("wait_ready", None))
        return steps

    @staticmethod
    def describe(step):
        action, argument = step
        if action == "restart":
            return "restart %s" % " ".join(argument)
        if action == "reload_nginx":
            return "reload nginx"
        return "wait for relay ready"

    def probe(self):
        """One readiness probe: (ready, detail)."""
        service, command = readiness_argv(self.release)
        try:
            self.compose.exec_in(service, *command)
        except ComposeTimeout:
            # A stuck docker, not an unready Relay (the probes give up within seconds): probing again would only wait again.
            raise
        except ComposeError as exc:
            return False, str(exc)
        return True, "relay answered ready"

    def wait_ready(self, timeout, interval=3):
        """Probe until Relay is ready or ``timeout`` seconds passed; (ready, attempts, last detail)."""
        deadline = self.clock() + timeout
        attempts = 0
        while True:
            attempts += 1
            ready, detail = self.probe()
            if ready or self.clock() >= deadline:
                return ready, attempts, detail
            self.sleep(max(0, min(interval, deadline - self.clock())))

    def execute(self, steps, timeout):
        """Run the planned steps; returns (done, ready). Compose failures raise ComposeError.

        ``self.done`` holds the steps done so far, so that a caller can say what changed when one fails.
        """
        done = self.done = []
        ready = None
        for step in steps:
            action, argument = step
            if action == "restart":
                self.log("restarting %s" % " ".join(argument))
                self.compose.restart(argument)
            elif action == "reload_nginx":
                self.log("reloading nginx so it resolves relay's new address")
                self.compose.reload_nginx()
            else:
                ready, attempts, detail = self.wait_ready(timeout)
                self.log("relay %s after %d probe(s): %s" % ("ready" if ready else "NOT ready", attempts, detail))
            done.append(self.describe(step))
        return done, ready


# --- engine detection (added for compose_limits) ----------------------------
# Supported: Docker Engine run by root, driven by the `docker` CLI with the
# Compose v2 plugin. Recognised and reported, not supported for restarts:
# podman-docker (`docker` is podman; `docker compose` hands over to an external
# compose provider), snap Docker (its CLI lives under /snap/bin, which a systemd
# unit's PATH lacks), rootless Docker (the daemon belongs to a user; root's CLI
# would talk to another daemon or none).

def detect_engine(docker_path, run, environ=None, root="/"):
    """What engine a docker CLI drives: a dict with kind, rootless, supported and a note."""
    environ = os.environ if environ is None else environ
    real = os.path.realpath(docker_path)
    rc, out, err = run([docker_path, "--version"])
    text = (out or err or "").strip()
    if "podman" in text.lower():
        kind = "podman-docker"
    elif real.startswith("/snap/") or docker_path.startswith("/snap/"):
        kind = "snap-docker"
    else:
        kind = "docker"
    host = environ.get("DOCKER_HOST", "")
    system_socket = os.path.exists(os.path.join(root, "var/run/docker.sock")) or os.path.exists(os.path.join(root, "run/docker.sock"))
    user_sockets = os.path.isdir(os.path.join(root, "run/user")) and any(
        os.path.exists(os.path.join(root, "run/user", uid, "docker.sock")) for uid in os.listdir(os.path.join(root, "run/user")))
    rootless = bool(re.match(r"^unix:///run/user/\d+/", host)) or (not system_socket and user_sockets)
    notes = {
        "podman-docker": "podman-docker: `docker compose` runs an external compose provider; not supported for recreating services",
        "snap-docker": "snap Docker: its CLI is under /snap/bin, not on a systemd unit's PATH; not supported for recreating services",
    }
    note = notes.get(kind, "")
    if rootless:
        note = (note + "; " if note else "") + "rootless Docker: the daemon belongs to a user; not supported for recreating services"
    return {"kind": kind, "rootless": rootless, "cli": real, "version": text if rc == 0 else None,
            "supported": kind == "docker" and not rootless, "note": note}
