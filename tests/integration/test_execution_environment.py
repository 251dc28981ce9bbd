# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml: `ansible-builder create` gives, offline, a build context from pinned parts
(the base image by tag or digest, ansible-core and ansible-runner by version, the collection as a file)
that installs this collection from its own tarball without Galaxy, and the collection declares its EE
needs to ansible-builder.

`ansible-builder build` is not run: it needs a registry for the base image."""

import hashlib
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, tool

VENV = os.path.join(REPO, ".cache", "venv-builder")
REQUIREMENTS = os.path.join(REPO, "tests", "requirements-builder.txt")
# Every way out of this machine points at a closed port: what runs with it may not reach Galaxy, PyPI or a registry.
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": "",
              "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9/api/", "PIP_INDEX_URL": "http://127.0.0.1:9/simple/"}


def build_args(containerfile):
    """The ARG defaults of a Containerfile: name -> value."""
    return dict(re.findall(r'^ARG (\w+)="(.*)"$', containerfile, re.M))


@pytest.fixture(scope="session")
def builder():
    """ansible-builder from tests/requirements-builder.txt, in a venv of its own (cached)."""
    with open(REQUIREMENTS, "rb") as handle:
        want = hashlib.sha256(handle.read()).hexdigest()
    stamp = os.path.join(VENV, ".requirements.sha256")
    python = os.path.join(VENV, "bin", "python")
    current = open(stamp).read().strip() if os.path.exists(stamp) else ""
    if not os.path.exists(python) or current != want:
        subprocess.run(["python3", "-m", "venv", "--clear", VENV], check=True)
        proc = subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                               "-r", REQUIREMENTS], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail("cannot install ansible-builder into %s from %s (PyPI needed once):\n%s"
                        % (VENV, REQUIREMENTS, proc.stderr[-2000:]))
        with open(stamp, "w") as handle:
            handle.write(want + "\n")
    return os.path.join(VENV, "bin", "ansible-builder")


@pytest.fixture(scope="session")
def tarball(tmp_path_factory):
    work = tmp_path_factory.mktemp("ee-tarball")
    subprocess.run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(work), REPO],
                   check=True, capture_output=True)
    return next(p for p in work.iterdir() if p.name.endswith(".tar.gz"))


@pytest.fixture(scope="session")
def context(builder, tarball, tmp_path_factory):
    """`ansible-builder create` of the repository's execution-environment.yml, the tarball beside it."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(os.path.join(REPO, "execution-environment.yml"), work)
    shutil.copy(tarball, work)
    # Offline: creating the context needs nothing from outside this machine.
    proc = subprocess.run([builder, "create", "-f", str(work / "execution-environment.yml"), "-c", str(work / "context")],
                          env=dict(os.environ, **NO_NETWORK), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A missing tarball is only a warning for ansible-builder; here it is an error.
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return work / "context"


def test_context_carries_the_built_tarball(context, tarball):
    copied = context / "_build" / "collections" / tarball.name
    assert copied.exists(), "execution-environment.yml does not name %s (galaxy.yml's version?)" % tarball.name
    assert copied.read_bytes() == tarball.read_bytes()


def test_galaxy_requirements_install_the_tarball_not_galaxy(context, tarball):
    with open(context / "_build" / "requirements.yml") as handle:
        requirements = yaml.safe_load(handle)
    assert requirements["collections"] == [{"name": "collections/" + tarball.name, "type": "file"}]
    assert not requirements.get("roles")


def test_containerfile_installs_collection_core_and_runner(context):
    text = (context / "Containerfile").read_text()
    assert "COPY _build /build" in text
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in text
    assert "$PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS" in text
    assert build_args(text)["PYCMD"] == "/usr/bin/python3.12"
    # The collections' own Python and system needs are read during the build.
    assert "introspect.py introspect" in text
    assert "/output/scripts/install-from-bindep" in text


def test_base_image_is_pinned_by_tag_or_digest(context):
    image = build_args((context / "Containerfile").read_text())["EE_BASE_IMAGE"]
    name, dummy, digest = image.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if digest:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
    else:
        # A version tag, not one that moves to the next major release (latest, or none at all).
        assert re.fullmatch(r"\d+(\.\d+)+(-[\w.]+)?", tag), "base image %s is not pinned by tag or digest" % image


def test_ansible_core_and_runner_are_pinned_to_a_supported_release(context):
    refs = build_args((context / "Containerfile").read_text())["ANSIBLE_INSTALL_REFS"].split()
    pins = dict(ref.split("==", 1) for ref in refs if "==" in ref)
    assert sorted(pins) == ["ansible-core", "ansible-runner"] and len(refs) == 2, refs
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        floor = yaml.safe_load(handle)["requires_ansible"].lstrip(">=")
    core = tuple(int(part) for part in pins["ansible-core"].split(".")[:2])
    # 2.19 to 2.21, as meta/runtime.yml and the README say.
    assert tuple(int(part) for part in floor.split(".")[:2]) <= core < (2, 22), pins


def test_the_ee_paths_resolve_from_the_galaxy_stage_without_galaxy(context, tarball, tmp_path):
    """The galaxy stage runs in /build (the context's _build) with the Containerfile's own options: the
    requirement resolves there with Galaxy out of reach."""
    build = context / "_build"
    options = build_args((context / "Containerfile").read_text())["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"].split()
    assert "--offline" in options
    # Only the empty target and the venv's bundled collections (the dependencies) are visible.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), **NO_NETWORK)
    argv = [tool("ansible-galaxy"), "collection", "install"] + options + ["-r", "requirements.yml", "-p", str(tmp_path)]
    proc = subprocess.run(argv, cwd=build, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = tmp_path / "ansible_collections" / "sentry_selfhosted" / "memory" / "MANIFEST.json"
    assert manifest.exists()


def test_introspection_reads_the_collection_needs(builder, installed_collection):
    """What ansible-builder collects from the installed copy: meta/execution-environment.yml and its files."""
    proc = subprocess.run([builder, "introspect", str(installed_collection.parents[2])],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = yaml.safe_load(proc.stdout.split("---", 1)[1])
    ours = "# from collection sentry_selfhosted.memory"
    assert "openssh-clients [platform:rpm]  " + ours in data["system"]
    assert "openssh-client [platform:dpkg]  " + ours in data["system"]
    # PyYAML is declared but every EE has it already (ansible-core); introspection drops it.
    with open(installed_collection / "meta" / "ee-requirements.txt") as handle:
        declared = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert declared == ["PyYAML>=5.1"]
    assert not [line for line in data["python"] if ours in line]
