# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one stand-in for the `docker` CLI, recording every call: used by every molecule scenario and test that needs one.

Boundary: the docker CLI the collection calls (sentry_selfhosted_docker), that
is the Docker engine behind it. Why a stand-in: no Docker engine can run
inside the systemd test boxes (podman containers) nor in unit and integration
tests, and Sentry's images cannot be pulled here. The real engine is used by
the docker stage only (tests/docker, with stand-ins for Sentry's containers
instead: a different boundary, see tests/docker/README.md).

It appends every call to calls.jsonl in its directory (DOCKER_STANDIN_DIR,
default /etc/docker-standin) as {"argv": [...], "command": "compose up -d ..."}
(the words without compose's global options) and answers from files there:

  --version                         Docker version 28.5.1, build stand-in
  compose version --short           2.40.3
  compose ... config --format json  config.json (real `docker compose config` output of the fixture)
  compose ... ps --status running --services  the lines of running
  ps -q ... / inspect IDS           containers.json (docker inspect's shape)
  anything else                     succeeds with no output (compose up, restart, exec, ...)

A call whose words contain the text of the file `fail` exits 1, so tests can
make a restart or the readiness probe fail. When the file real-cli there names
a real docker CLI with the Compose v2 plugin, the calls that need no engine
(--version, compose version, compose config) are handed to it instead, so
that what the collection renders is validated by the real Compose.
"""

import json
import os
import sys

HERE = os.environ.get("DOCKER_STANDIN_DIR", "/etc/docker-standin")
GLOBAL_WITH_VALUE = ("--ansi", "--project-directory", "--env-file", "-f", "--file", "-p", "--project-name", "--profile")


def read(name, default=""):
    try:
        with open(os.path.join(HERE, name)) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def command_words(argv):
    """The compose subcommand and its arguments, without the global options."""
    words, i = [], 0
    while i < len(argv):
        if argv[i] in GLOBAL_WITH_VALUE:
            i += 2
            continue
        words.append(argv[i])
        i += 1
    return words


def needs_no_engine(words):
    return words[:1] == ["--version"] or (words[:1] == ["compose"] and words[1:2] in (["config"], ["version"]))


def main(argv):
    words = command_words(argv)
    with open(os.path.join(HERE, "calls.jsonl"), "a") as handle:
        handle.write(json.dumps({"argv": argv, "command": " ".join(words)}) + "\n")
    fail = read("fail").strip()
    if fail and fail in " ".join(words):
        sys.stderr.write("docker stand-in: failing %r as asked\n" % " ".join(words))
        return 1
    real = read("real-cli").strip()
    if real and needs_no_engine(words):
        os.execv(real, [real] + argv)
    containers = json.loads(read("containers.json", "[]"))
    if words[:1] == ["--version"]:
        print("Docker version 28.5.1, build stand-in")
    elif words[:3] == ["compose", "version", "--short"]:
        print("2.40.3")
    elif words[:2] == ["compose", "config"]:
        sys.stdout.write(read("config.json", "{}"))
    elif words[:2] == ["compose", "ps"] and "--services" in words:
        sys.stdout.write(read("running"))
    elif words[:1] == ["ps"] and containers:
        print("\n".join(c["Id"] for c in containers))
    elif words[:1] == ["inspect"]:
        print(json.dumps([c for c in containers if c["Id"] in words[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
