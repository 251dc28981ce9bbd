# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the real-engine stage.

tests/docker/run starts a private Docker engine, sets DOCKER_HOST and
SENTRY_MEMORY_DOCKER_STAGE=1 and runs these tests. The plain pytest stage
does not collect them (pytest.ini's testpaths leave tests/docker out, and
`pytest tests` ignores them here): without that engine they cannot run, and
the docker stage runs every one of them. Run them through tests/docker/run,
never against another engine.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "project")
PROJECT = "sentry-self-hosted"
READY_PATH = "/api/relay/healthcheck/ready/"
# The miniature checkout's services with its .env (profile feature-complete).
SERVICES_ALL = frozenset({"web", "worker", "cron", "snuba-replays-consumer", "relay", "nginx"})

if os.environ.get("SENTRY_MEMORY_DOCKER_STAGE") != "1":
    collect_ignore_glob = ["test_*.py"]
elif os.environ.get("SENTRY_MEMORY_COLLECTIONS"):
    # module_utils are imported from the installed copy (hacking/env), as the modules use them.
    sys.path.insert(0, os.environ["SENTRY_MEMORY_COLLECTIONS"])

# After the path above: the installed copy's.
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import checkout_env  # noqa: E402 pylint: disable=wrong-import-position


def docker(*args, **kwargs):
    """Run the docker CLI against the stage's engine; raise with its output when it fails."""
    check = kwargs.pop("check", True)
    proc = subprocess.run(["docker"] + list(args), capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError("docker %s failed (rc=%s): %s" % (" ".join(args), proc.returncode, proc.stderr or proc.stdout))
    return proc


class Stack:
    """The miniature self-hosted checkout in a temporary directory, and its running project."""

    def __init__(self, directory):
        self.dir = directory
        self.state = os.path.join(directory, "state")

    def compose(self, *args, **kwargs):
        """docker compose in the checkout as self-hosted's scripts call it: no -f, .env picked up."""
        check = kwargs.pop("check", True)
        proc = subprocess.run(["docker", "compose", "--ansi", "never"] + list(args), cwd=self.dir,
                              capture_output=True, text=True, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError("docker compose %s failed (rc=%s): %s" % (" ".join(args), proc.returncode, proc.stderr or proc.stdout))
        return proc

    def up(self):
        self.compose("up", "-d", "--wait", "--wait-timeout", "60")

    def down(self):
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "3", check=False)

    def containers(self):
        """{service: docker inspect of its container} for the project's running containers."""
        ids = docker("ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=%s" % PROJECT).stdout.split()
        if not ids:
            return {}
        found = json.loads(docker("inspect", *ids).stdout)
        return dict((c["Config"]["Labels"]["com.docker.compose.service"], c) for c in found)

    def ids(self):
        return dict((service, c["Id"]) for service, c in self.containers().items())

    def inspect(self, service):
        return self.containers()[service]

    def services(self):
        return self.compose("config", "--services").stdout.split()

    def write_override(self, services):
        """docker-compose.override.yml with these service settings; None removes the file."""
        text = None if services is None else yaml.safe_dump({"services": services}, default_flow_style=False)
        self.write_file("docker-compose.override.yml", text)

    def write_env_custom(self, text):
        self.write_file(".env.custom", text)

    def write_file(self, name, text):
        """The project's file ``name`` holding ``text``; None removes it."""
        path = os.path.join(self.dir, name)
        if text is None:
            if os.path.exists(path):
                os.remove(path)
            return
        with open(path, "w") as handle:
            handle.write(text)

    def set_relay_ready(self, ready):
        """Toggle the stand-in's readiness (503 while the flag file exists)."""
        flag = os.path.join(self.state, "relay-unhealthy")
        if ready and os.path.exists(flag):
            os.remove(flag)
        elif not ready:
            open(flag, "w").close()

    def log(self, name):
        path = os.path.join(self.state, name)
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            return handle.read().splitlines()

    def relay_ready_status(self):
        """The readiness answer as seen from another container of the compose network (nginx)."""
        probe = ("import urllib.request, urllib.error\n"
                 "try:\n"
                 "    print(urllib.request.urlopen('http://relay:3000%s', timeout=3).status)\n"
                 "except urllib.error.HTTPError as exc:\n"
                 "    print(exc.code)\n") % READY_PATH
        proc = self.compose("exec", "-T", "nginx", "python3", "-c", probe, check=False)
        return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip().isdigit() else None

    def wait_relay_status(self, status, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.relay_ready_status() == status:
                return
            time.sleep(0.3)
        raise AssertionError("relay did not answer %s within %s s (last: %s)" % (status, timeout, self.relay_ready_status()))


@pytest.fixture(scope="session")
def engine():
    """The private engine tests/docker/run started, with the project's images imported."""
    if os.environ.get("SENTRY_MEMORY_DOCKER_STAGE") != "1" or not os.environ.get("DOCKER_HOST"):
        pytest.fail("the real-engine tests run through tests/docker/run (it starts the private engine)")
    docker("version")
    env = checkout_env(TEMPLATE)
    tarball = os.environ.get("SENTRY_MEMORY_ROOTFS_TARBALL")
    if not tarball or not os.path.exists(tarball):
        pytest.fail("SENTRY_MEMORY_ROOTFS_TARBALL does not name the root filesystem tarball (hacking/systemd-image --tarball)")
    if docker("image", "inspect", env["SENTRY_IMAGE"], check=False).returncode != 0:
        docker("import", tarball, env["SENTRY_IMAGE"])
    docker("tag", env["SENTRY_IMAGE"], env["RELAY_IMAGE"])
    return env


@pytest.fixture(scope="module")
def stack(engine, tmp_path_factory):
    """A fresh copy of the miniature checkout, up; torn down after the module's tests."""
    directory = str(tmp_path_factory.mktemp("checkout") / "sentry")
    shutil.copytree(TEMPLATE, directory)
    new = Stack(directory)
    os.makedirs(new.state)
    try:
        new.up()
        yield new
    finally:
        new.down()


def ansible_env():
    """The environment of hacking/env, pointed at the installed collection."""
    installed = os.environ.get("SENTRY_MEMORY_COLLECTIONS")
    if not installed or not os.path.isdir(os.path.join(installed, "ansible_collections", "sentry_selfhosted", "memory")):
        pytest.fail("the collection is not installed: source hacking/env (tests/docker/run does)")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    })
    return env


def run_playbook(path, plays):
    """Write plays to path and run them with the installed collection on localhost.

    Returns ansible-playbook's exit code and its JSON report.
    """
    with open(str(path), "w") as handle:
        json.dump(plays, handle)
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    inventory = os.path.join(os.path.dirname(os.path.dirname(HERE)), "hacking", "localhost.yml")
    proc = subprocess.run([ansible_playbook, "-i", inventory, str(path)], env=ansible_env(),
                          capture_output=True, text=True, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook gave no JSON (rc=%s): %s %s" % (proc.returncode, proc.stdout, proc.stderr))


@pytest.fixture(scope="session")
def run_module():
    """Run one module of the installed collection on localhost; DOCKER_HOST reaches the module."""
    env = ansible_env()
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")

    def run(name, args):
        proc = subprocess.run([ansible, "localhost", "-c", "local", "-m", name, "-a", json.dumps(args)],
                              env=env, capture_output=True, text=True, check=False)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("ansible gave no JSON (rc=%s): %s %s" % (proc.returncode, proc.stdout, proc.stderr))
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return run
