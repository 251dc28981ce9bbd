# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way the collection calls Docker Compose on a self-hosted checkout.

Standard library only, like host_memory: modules pass ``module.run_command``
as ``run`` and the programs installed on hosts pass a subprocess wrapper. Every
call is an argv list; nothing is ever given to a shell.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

COMPOSE_FILE = "docker-compose.yml"
OVERRIDE_FILE = "docker-compose.override.yml"
# Compose service names: what `docker compose` itself accepts.
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")


class ComposeError(Exception):
    """A compose command failed or its answer could not be used."""


def valid_service_name(name):
    return bool(SERVICE_NAME.match(name or ""))


def is_selfhosted_checkout(project_dir):
    """A checkout has its compose file, .env and relay folder."""
    return all(os.path.exists(os.path.join(project_dir, name)) for name in (COMPOSE_FILE, ".env", "relay"))


class SentryCompose:
    """docker compose in a self-hosted checkout, with upstream's env files.

    install.sh hands compose ``.env.custom`` when it exists, after exporting
    .env.custom's values over .env's; ``--env-file .env --env-file .env.custom``
    gives compose the same merged values (a later file wins).
    """

    def __init__(self, project_dir, run, docker="docker"):
        self.project_dir = project_dir
        self.run = run
        self.docker = docker

    def env_files(self):
        names = [".env", ".env.custom"]
        return [os.path.join(self.project_dir, n) for n in names if os.path.exists(os.path.join(self.project_dir, n))]

    def argv(self, *args, **kwargs):
        """The full argv of a compose call; ``files`` replaces the default file pair."""
        argv = [self.docker, "compose", "--ansi", "never", "--project-directory", self.project_dir]
        for env_file in self.env_files():
            argv += ["--env-file", env_file]
        for compose_file in kwargs.get("files") or []:
            argv += ["-f", compose_file]
        return argv + list(args)

    def call(self, *args, **kwargs):
        """Run a compose command; raise ComposeError with its output when it fails."""
        argv = self.argv(*args, files=kwargs.get("files"))
        rc, out, err = self.run(argv)
        if rc != 0:
            raise ComposeError("%s failed (rc=%s): %s" % (" ".join(argv[1:]), rc, (err or out).strip()))
        return out

    def version(self):
        """Compose's version as a tuple; refuses Compose v1, which cannot run self-hosted."""
        out = self.run([self.docker, "compose", "version", "--short"])
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
        """The merged project as compose resolves it (profiles, env, override)."""
        return json.loads(self.call("config", "--format", "json", files=files))

    def services(self, files=None):
        """Services of the active profiles, in compose's order."""
        return [s for s in self.call("config", "--services", files=files).split() if s]

    def up_no_deps(self, services):
        """Recreate just these services (a changed limit needs a new container)."""
        if services:
            self.call("up", "-d", "--no-deps", *self._checked(services))

    def restart(self, services):
        self.call("restart", *self._checked(services))

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
