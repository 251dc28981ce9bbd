# SPDX-License-Identifier: GPL-3.0-or-later
"""Override hygiene across an upgrade: 24.8 (worker, cron, geoipupdate) to 26.8.

Our override is rendered for the 24.8 checkout, then the checkout is switched to
26.8 (as `git checkout` of the new release would) with the override left in
place. Without the hygiene step the real Compose v2 CLI refuses the files; with
it (compose_override on the new checkout) Compose accepts them and every line
of the operator's own part survives. Runs on the project's fixtures, and on the
real upstream files when ../shared/upstream is beside the checkout.
"""

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_budget import plan as budget_plan
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose
from ansible_collections.sentry_selfhosted.memory.plugins.modules import compose_override as co

from checkouts import FIXTURE, FIXTURE_24, UPSTREAM
from test_compose_override_cli import Failed, FakeModule, run

OVERRIDE = "docker-compose.override.yml"
RELEASE_FILES = ("docker-compose.yml", ".env", os.path.join("relay", "config.example.yml"))

# The operator's own part: entries for services both releases have, and a
# sidecar of their own (a complete service, with an image).
OPERATOR = """# operator's override: kept as it is, comments included.
services:
  web:
    # our SMTP relay
    environment:
      SENTRY_MAIL_HOST: "mail.example.com"   # do not change
  relay:
    ports:
      - "127.0.0.1:3000:3000"
  # a sidecar of ours
  backup-agent:
    image: "busybox:1.36"
    command: ["sleep", "infinity"]
"""

pytestmark = pytest.mark.usefixtures("compose_cli")

PAIRS = [
    pytest.param((FIXTURE_24, FIXTURE, 16384), id="fixtures"),
    pytest.param((os.path.join(UPSTREAM, "24.8.0"), os.path.join(UPSTREAM, "26.8.0"), 65536), id="upstream",
                 marks=pytest.mark.skipif(not os.path.isdir(UPSTREAM), reason="../shared/upstream is not beside this checkout")),
]


def module_run(project_dir, plan=None, check_mode=False, **params):
    module = FakeModule(dict(project_dir=str(project_dir), plan=plan, **params), check_mode=check_mode)
    return co.ComposeOverride(module, SentryCompose(str(project_dir), run, "docker")).run()


def compose_config(project_dir):
    """`docker compose config` in the checkout, as install.sh and every upstream script call it."""
    proc = subprocess.run(["docker", "compose", "--project-directory", str(project_dir), "config", "--services"],
                          capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout.split(), proc.stderr


def compose_config_base(release_dir):
    """The services a release's own compose file defines (all profiles)."""
    proc = subprocess.run(["docker", "compose", "--project-directory", release_dir, "-f", os.path.join(release_dir, "docker-compose.yml"),
                           "--profile", "*", "config", "--services"], capture_output=True, text=True, check=True)
    return proc.stdout.split()


def switch_release(target, new):
    """What `git checkout NEW_TAG` does to the files compose reads; the git-ignored override stays."""
    for name in RELEASE_FILES:
        shutil.copyfile(os.path.join(new, name), target / name)


def write_limits(project_dir, ram_mb):
    services = module_run(project_dir)["services"]
    return module_run(project_dir, budget_plan(services, ram_mb)), services


@pytest.fixture
def old_checkout(tmp_path, request):
    old, new, ram_mb = request.param
    target = tmp_path / "sentry"
    shutil.copytree(old, target)
    subprocess.run(["chmod", "-R", "u+w", str(target)], check=True)
    (target / OVERRIDE).write_text(OPERATOR)
    return target, new, ram_mb


@pytest.mark.parametrize("old_checkout", PAIRS, indirect=True)
def test_without_hygiene_compose_refuses_with_it_compose_accepts(old_checkout):
    target, new, ram_mb = old_checkout
    result, old_services = write_limits(target, ram_mb)
    assert result["changed"] and {"worker", "cron"} <= set(old_services)
    ours = (target / OVERRIDE).read_text()
    # Each service of the collection's alone is one line, its keys in a flow mapping, the mark at its end.
    assert all(re.search(r"(?m)^  %s: \{mem_limit: .*\}  %s$" % (name, co.MARK), ours) for name in ("worker", "cron"))

    switch_release(target, new)
    rc, services, err = compose_config(target)
    assert rc != 0 and "neither an image nor a build context" in err
    named = err.split('"')[1]
    assert named in old_services and named not in compose_config_base(new)

    # The hygiene step: every run of compose_override checks the entries first.
    read = module_run(target)
    dropped = sorted(set(old_services) - set(compose_config_base(new)) - {"backup-agent"})
    assert {"worker", "cron"} <= set(dropped) and sorted(read["stale_services"]) == dropped
    new_services = read["services"]
    assert "worker" not in new_services and "cron" not in new_services
    result = module_run(target, budget_plan(new_services, ram_mb))
    assert result["changed"]

    rc, services, err = compose_config(target)
    assert rc == 0, err
    assert set(new_services) | {"backup-agent"} == set(services)
    text = (target / OVERRIDE).read_text()
    assert not [line for line in text.splitlines() if line.split(":")[0].strip() in ("worker", "cron")]
    lines = text.splitlines()
    assert [line for line in lines if line in OPERATOR.splitlines()] == OPERATOR.splitlines()
    config = SentryCompose(str(target), run).config()
    assert config["services"]["web"]["environment"]["SENTRY_MAIL_HOST"] == "mail.example.com"
    assert config["services"]["backup-agent"]["image"] == "busybox:1.36"
    assert all(int(config["services"][s].get("mem_limit") or 0) > 0 for s in new_services
               if "deploy" not in config["services"][s])
    assert not module_run(target, budget_plan(new_services, ram_mb))["changed"]


@pytest.mark.parametrize("old_checkout", PAIRS, indirect=True)
def test_lifting_the_limits_keeps_exactly_the_operators_part(old_checkout):
    target, new, ram_mb = old_checkout
    write_limits(target, ram_mb)
    switch_release(target, new)
    result = module_run(target, state="absent", check_mode=True)
    assert result["changed"] and result["diff"]["after"] == OPERATOR
    assert co.MARK in (target / OVERRIDE).read_text()
    result = module_run(target, state="absent")
    assert result["changed"] and (target / OVERRIDE).read_text() == OPERATOR
    assert compose_config(target)[0] == 0
    assert not module_run(target, state="absent")["changed"]


@pytest.mark.parametrize("old_checkout", PAIRS[:1], indirect=True)
def test_operator_entry_for_a_dropped_service_is_an_error_naming_it(old_checkout):
    target, new, ram_mb = old_checkout
    own = OPERATOR + "  worker:\n    environment:\n      C_FORCE_ROOT: \"1\"\n"
    (target / OVERRIDE).write_text(own)
    write_limits(target, ram_mb)
    before = (target / OVERRIDE).read_text()
    switch_release(target, new)
    for params in (dict(), dict(state="absent")):
        with pytest.raises(Failed) as failed:
            module_run(target, **params)
        line = before.splitlines().index("  worker:") + 1
        assert "worker (line %d)" % line in failed.value.msg and "your own" in failed.value.msg
        assert failed.value.result["operator_stale_services"] == ["worker"]
        assert (target / OVERRIDE).read_text() == before
    with pytest.raises(Failed, match="worker"):
        module_run(target, budget_plan(["web"], ram_mb))
    assert (target / OVERRIDE).read_text() == before


def test_service_entries_tell_ours_from_the_operators():
    doc = co.YamlText(OPERATOR + "  worker:  %s\n    mem_limit: 1g  %s\n  cron:\n    mem_limit: 1g  %s\n"
                      % (co.MARK, co.MARK, co.MARK))
    entries = dict((e["name"], e) for e in doc.service_entries())
    assert sorted(entries) == ["backup-agent", "cron", "relay", "web", "worker"]
    assert entries["worker"]["ours"] and entries["worker"]["managed"] and not entries["worker"]["complete"]
    assert not entries["cron"]["ours"] and entries["cron"]["managed"]
    assert entries["backup-agent"]["complete"] and not entries["backup-agent"]["managed"]
    assert entries["web"]["line"] == 3
    assert co.YamlText("").service_entries() == []
