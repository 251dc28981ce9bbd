# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A self-hosted checkout as the host's Compose v2 resolves it: its services, profiles and override entries.

The one reader: the compose_services module returns what it reads, and
compose_override reads through it before it writes. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import tempfile
from contextlib import contextmanager

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFile, ManagedFileError
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import YamlText as OverrideText
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import (
    COMPOSE_FILE,
    OVERRIDE_FILE,
    ComposeAnswerError,
    ComposeError,
    ComposeTimeout,
    SentryCompose,
    UnsafePathError,
    detect_engine,
    is_selfhosted_checkout,
    private_directory,
)

# Docker failing, not the checkout: reading it another way (without the collection's lines) cannot help.
DOCKER_FAULTS = (ComposeTimeout, ComposeAnswerError)


def module_compose(module, docker, run=None):
    """The SentryCompose a module calls Docker through, on its project_dir with its docker_timeout.

    Calls run through host_program.run_command, the collection's one way to run a command with a time
    limit (AnsibleModule.run_command has none); SentryCompose decides each call's limit. ``run``, of the same
    shape, lets tests answer for the docker CLI. A docker_timeout under 1 s fails the module.
    """
    seconds = module.params["docker_timeout"]
    if seconds < 1:
        module.fail_json(msg="docker_timeout must be at least 1 second, got %s" % seconds)
    return SentryCompose(module.params["project_dir"], run or host_program.run_command, docker, timeout=seconds)


class CheckoutError(Exception):
    """The checkout cannot be read as it stands; ``details`` go into the module's failure."""

    def __init__(self, msg, **details):
        super(CheckoutError, self).__init__(msg)
        self.details = details


def service_config(config, name):
    """One service of ``docker compose config`` as JSON ({} when it has none)."""
    return (config.get("services") or {}).get(name) or {}


def deploy_memory(service, kind):
    """deploy.resources.<kind>.memory of a service, or None."""
    return (((service.get("deploy") or {}).get("resources") or {}).get(kind) or {}).get("memory")


def limit_key(service):
    """The key a service already uses: deploy when it has a deploy memory limit and no mem_limit."""
    return "deploy" if deploy_memory(service, "limits") is not None and service.get("mem_limit") is None else "mem_limit"


def workers(service):
    """The service's concurrency, from --concurrency in its command or a *_CONCURRENCY variable; None without one."""
    command = service.get("command") or []
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    for i, word in enumerate(words):
        value = word[len("--concurrency="):] if word.startswith("--concurrency=") else (
            words[i + 1] if word == "--concurrency" and i + 1 < len(words) else None)
        if value is not None and value.isdigit() and int(value) > 0:
            return int(value)
    for name, value in sorted((service.get("environment") or {}).items()):
        if name.endswith("_CONCURRENCY") and str(value).isdigit() and int(value) > 0:
            return int(value)
    return None


class Checkout(object):
    """Read a checkout through ``compose`` (a SentryCompose); nothing here writes."""

    def __init__(self, compose, tmpdir=None):
        self.compose = compose
        self.project_dir = compose.project_dir
        self.override = ManagedFile(os.path.join(self.project_dir, OVERRIDE_FILE))
        self.tmpdir = tmpdir
        self.notes = []

    @contextmanager
    def with_override(self, text):
        """The compose files of the checkout with ``text`` as its override, in a temporary file, for compose to read."""
        handle, candidate = tempfile.mkstemp(prefix="compose-limits-", suffix=".yml", dir=self.tmpdir)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
            yield [os.path.join(self.project_dir, COMPOSE_FILE), candidate]
        finally:
            os.unlink(candidate)

    def hygiene(self):
        """Check the override's entries against the services the checkout's own compose file defines.

        Runs first: an entry for a service the checkout no longer has breaks
        every compose command (install.sh included). The collection's own are
        dropped by the next write (returned as stale); the operator's are an
        error naming them. Returns (stale, managed) service names.
        """
        entries = OverrideText(self.override.read()).service_entries()
        managed = [e["name"] for e in entries if e["managed"]]
        if not entries:
            return [], managed
        try:
            defined = set(self.compose.call("--profile", "*", "config", "--services",
                                            files=[os.path.join(self.project_dir, COMPOSE_FILE)]).split())
        except DOCKER_FAULTS:
            raise
        except ComposeError as exc:
            raise CheckoutError("docker compose cannot read the checkout's own %s: %s" % (COMPOSE_FILE, exc))
        stale = [e for e in entries if e["name"] not in defined and not e["complete"]]
        operator = [e for e in stale if not e["ours"]]
        if operator:
            raise CheckoutError(
                "%s names services that %s no longer defines: %s. These entries are your own (not written by "
                "sentry_selfhosted.memory): remove them, or give them an image; nothing was changed."
                % (self.override.path, COMPOSE_FILE, ", ".join("%s (line %d)" % (e["name"], e["line"]) for e in operator)),
                operator_stale_services=[e["name"] for e in operator], managed_services=managed)
        if stale:
            self.notes.append("the collection's lines for %s go at the next write: the checkout no longer defines %s"
                              % (", ".join(e["name"] for e in stale), "it" if len(stale) == 1 else "them"))
        return [e["name"] for e in stale], managed

    def merged(self):
        """The merged config and the active services.

        When the override breaks compose and lines the collection wrote are
        the cause (an upgrade dropped a service they name), the checkout is
        read without those lines, which the next write drops.
        """
        try:
            return self.compose.config(), self.compose.services()
        except DOCKER_FAULTS:
            raise
        except ComposeError as exc:
            first = exc
        doc = OverrideText(self.override.read())
        before = doc.text()
        doc.drop_stale()
        if doc.text() == before:
            raise CheckoutError("docker compose cannot read the checkout with its override: %s" % first)
        try:
            with self.with_override(doc.text()) as files:
                config, services = self.compose.config(files=files), self.compose.services(files=files)
        except ComposeError:
            raise CheckoutError("docker compose cannot read the checkout with its override, even without the collection's lines: %s" % first)
        self.notes.append("the override did not work with this checkout (%s); it was read without the collection's own lines, "
                          "which the next write replaces" % first)
        return config, services

    def read(self):
        """Everything a caller needs about the checkout, as (facts, merged config).

        facts: services (compose's order), service_profiles (the memory_budget
        filter's input), limit_keys, stale_services, managed_services,
        compose_version, engine, override and notes. A docker call that ran
        out of time or answered nonsense, or an override that cannot be read
        (a directory where it should be), is a CheckoutError saying just that.
        """
        try:
            return self._read()
        except DOCKER_FAULTS + (ManagedFileError,) as exc:
            raise CheckoutError(str(exc))

    def _read(self):
        if not is_selfhosted_checkout(self.project_dir):
            raise CheckoutError("%s is not a self-hosted Sentry checkout (it needs %s, .env and relay/)" % (self.project_dir, COMPOSE_FILE))
        try:
            version = self.compose.version()
        except ComposeError as exc:
            raise CheckoutError(str(exc))
        stale, managed = self.hygiene()
        engine = detect_engine(self.compose.docker, self.compose.run_docker)
        if engine["note"]:
            self.notes.append(engine["note"])
        config, services = self.merged()
        facts = dict(
            services=services,
            service_profiles=[{"name": s, "profiles": list(service_config(config, s).get("profiles") or []),
                               "workers": workers(service_config(config, s))} for s in services],
            limit_keys=dict((s, limit_key(service_config(config, s))) for s in services),
            stale_services=stale, managed_services=managed, engine=engine,
            compose_version=".".join(str(p) for p in version), override=self.override.path, notes=self.notes)
        return facts, config


# The history of peaks of use compose_limits plans from (sentry_selfhosted_peaks_file): root plans from it, so only
# a regular file of the module's own user that nobody else can write is read.
PEAKS_VARIABLE = "sentry_selfhosted_peaks_file"


def read_peaks(path):
    """The remembered peaks of use at ``path`` (parsed JSON), or None without a file; CheckoutError for a file another
    user controls or one that is not JSON (its shape is the memory_budget filter's to check)."""
    try:
        info = os.lstat(path)
    except OSError:
        if os.path.lexists(path):
            raise
        return None
    problem = ("a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file" if not stat.S_ISREG(info.st_mode)
               else "owned by uid %d" % info.st_uid if info.st_uid != os.geteuid()
               else "writable by others (mode %04o)" % stat.S_IMODE(info.st_mode) if info.st_mode & 0o022 else None)
    if problem:
        raise CheckoutError("%s (%s) is %s: the plan is not made from a file another user controls. Remove it (or make it "
                            "root's, mode 0600) and run again; nothing was changed." % (path, PEAKS_VARIABLE, problem))
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as exc:
        raise CheckoutError("%s (%s) cannot be read as JSON (%s); compose_limits_forget_peaks starts the history afresh; "
                            "nothing was changed." % (path, PEAKS_VARIABLE, exc))


def write_peaks(path, peaks):
    """Keep ``peaks`` at ``path`` (0600, in a directory only its owner can change); False when it already says that.

    A record of what the collection saw, like the alerts check's state: not a change an operator configured."""
    text = json.dumps(peaks, sort_keys=True, indent=4) + "\n"
    try:
        same = read_peaks(path) == peaks
    except CheckoutError:
        same = False  # a damaged file is replaced by the history this plan was made with
    try:
        if same:
            os.chmod(path, 0o600)  # root's alone to read too: it tells what ran and when
            return False
        private_directory(os.path.dirname(path), 0o755)
        host_program.write_atomic(path, text, 0o600)
    except (IOError, OSError, UnsafePathError) as exc:
        raise CheckoutError("cannot keep the history of peaks in %s (%s): %s" % (path, PEAKS_VARIABLE, exc))
    return True
