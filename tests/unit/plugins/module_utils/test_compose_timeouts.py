# SPDX-License-Identifier: GPL-3.0-or-later
"""Time limits of the docker and compose calls SentryCompose makes, and compose answers that are not a JSON object.

A fake docker CLI (a shell script in tmp_path) stands in for a stuck daemon: it sleeps far longer than the limit.
"""

import os
import stat
import time

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program as hp
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose as sc
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import Checkout, CheckoutError
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.yaml_text import MARK

from checkouts import minimal_checkout
from fakes import Clock

# Far beyond the 1 s limit the tests set: a call that waits it out is caught by the elapsed-time assertions.
HANG = 10

FAKE_DOCKER = """#!/bin/sh
case " $* " in
  *" %(hang)s "*) exec sleep %(sleep)d ;;
  *" --version "*) echo "Docker version 28.2.2, build e6534b4" ;;
  *" compose version "*) echo "2.40.3" ;;
  *" config --services "*) printf 'relay\\nweb\\n' ;;
  *" config --format json "*) echo '{"services": {"relay": {}, "web": {}}}' ;;
esac
"""


def fake_docker(tmp_path, hang):
    """An executable docker CLI that hangs on any call whose argv holds the words ``hang``."""
    path = tmp_path / "docker"
    path.write_text(FAKE_DOCKER % {"hang": hang, "sleep": HANG})
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def checkout(tmp_path):
    return str(minimal_checkout(tmp_path / "sentry"))


class Recorder:
    """A run of host_program.run_command's shape: records (words after the global options, limit), answers from ``answers``."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def __call__(self, argv, timeout):
        words = argv[argv.index("--project-directory") + 2:] if "--project-directory" in argv else argv[1:]
        while words and words[0] in ("--env-file", "-f"):
            words = words[2:]
        line = " ".join(words)
        self.calls.append((line, timeout))
        for start, answer in self.answers.items():
            if line.startswith(start):
                return answer
        return 0, "", ""


# --- class 1: time limits -------------------------------------------------------------------------------------

def test_a_stuck_compose_call_is_stopped_at_its_limit_and_named(tmp_path, checkout):
    compose = sc.SentryCompose(checkout, hp.run_command, fake_docker(tmp_path, "config"), timeout=1)
    started = time.monotonic()
    with pytest.raises(sc.ComposeError) as caught:
        compose.services()
    assert time.monotonic() - started < HANG / 2
    message = str(caught.value)
    assert "config --services` did not end within 1 s" in message
    assert "docker_timeout" in message


def test_a_stuck_plain_docker_call_is_stopped_too(tmp_path, checkout):
    """run_docker is the run modules hand host_memory.list_compose_containers and detect_engine."""
    docker = fake_docker(tmp_path, "ps")
    compose = sc.SentryCompose(checkout, hp.run_command, docker, timeout=1)
    started = time.monotonic()
    with pytest.raises(sc.ComposeError, match=r"`%s ps -q` did not end within 1 s" % docker):
        compose.run_docker([docker, "ps", "-q"])
    assert time.monotonic() - started < HANG / 2


def test_reads_get_the_timeout_and_recreations_at_least_the_recreate_limit(checkout):
    run = Recorder({"compose version": (0, "2.40.3\n", ""), "config --format json": (0, '{"services": {}}', "")})
    compose = sc.SentryCompose(checkout, run, "docker", timeout=45)
    compose.version()
    compose.config()
    compose.services()
    compose.call("ps", "--services")
    compose.reload_nginx()
    compose.up_no_deps(["relay", "web"])
    compose.restart(["relay"])
    assert run.calls == [
        ("compose version --short", 45), ("config --format json", 45), ("config --services", 45),
        ("ps --services", 45), ("exec -T nginx nginx -s reload", 45),
        ("up -d --no-deps relay web", 900), ("restart relay", 900),
    ]


def test_a_timeout_above_the_recreate_limit_applies_to_recreations(checkout):
    run = Recorder()
    sc.SentryCompose(checkout, run, "docker", timeout=1800).restart(["relay"])
    assert run.calls == [("restart relay", 1800)]


def test_a_timed_out_answer_is_an_error_even_where_a_failure_is_tolerated(checkout):
    """The readiness probe takes a failing exec for "not ready" and probes again; a stuck docker would only hang again."""
    run = Recorder({"exec": (hp.TIMED_OUT, "", "did not end")})
    clock = Clock()
    restarter = sc.RelayRestart(sc.SentryCompose(checkout, run, "docker", timeout=5), (24, 8, 0),
                                sleep=clock.sleep, clock=clock)
    with pytest.raises(sc.ComposeError, match="within 5 s"):
        restarter.wait_ready(timeout=600)
    assert len(run.calls) == 1


def test_execute_keeps_the_steps_done_before_one_times_out(checkout):
    run = Recorder({"exec": (hp.TIMED_OUT, "", "")})
    restarter = sc.RelayRestart(sc.SentryCompose(checkout, run, "docker", timeout=5), (24, 8, 0))
    with pytest.raises(sc.ComposeError):
        restarter.execute([("restart", ["relay"]), ("reload_nginx", None), ("wait_ready", None)], 60)
    assert restarter.done == ["restart relay"]


def test_checkout_read_names_a_stuck_docker_version_call(tmp_path, checkout):
    docker = fake_docker(tmp_path, "--version")
    started = time.monotonic()
    with pytest.raises(CheckoutError, match=r"`%s --version` did not end within 1 s" % docker):
        Checkout(sc.SentryCompose(checkout, hp.run_command, docker, timeout=1)).read()
    assert time.monotonic() - started < HANG / 2


def write_stale_override(checkout):
    """An override whose only entry is the collection's, for a service the checkout lacks: a fallback read would drop it."""
    with open(os.path.join(checkout, sc.OVERRIDE_FILE), "w") as handle:
        handle.write("services:  %s\n  gone:  %s\n    mem_limit: 1024m  %s\n" % (MARK, MARK, MARK))


def test_checkout_read_stops_at_a_timed_out_config_without_reading_it_another_way(checkout):
    write_stale_override(checkout)
    run = Recorder({"compose version": (0, "2.40.3\n", ""), "--profile * config --services": (0, "relay\nweb\n", ""),
                    "config --format json": (hp.TIMED_OUT, "", "")})
    with pytest.raises(CheckoutError) as caught:
        Checkout(sc.SentryCompose(checkout, run, "docker", timeout=3)).read()
    assert "config --format json` did not end within 3 s" in str(caught.value)
    assert [c for c, limit in run.calls if "--format json" in c] == ["config --format json"]


# --- class 2: compose config answers that are not a JSON object ---------------------------------------------

NOT_OBJECTS = [
    "[]",
    '["relay", "web"]',
    '"services"',
    "null",
    "",
    '{"services": {"relay": {"image": "getsentry/re',
    '{"services": ["relay", "web"]}',
    '{"services": null}',
    '{"services": {"relay": "getsentry/relay"}}',
]


@pytest.mark.parametrize("answer", NOT_OBJECTS)
def test_a_config_answer_that_is_not_an_object_of_services_is_a_compose_error(checkout, answer):
    compose = sc.SentryCompose(checkout, lambda argv: (0, answer, ""))
    with pytest.raises(sc.ComposeError) as caught:
        compose.config()
    assert "`docker compose config --format json` in %s did not answer with a JSON object" % checkout in str(caught.value)


@pytest.mark.parametrize("answer", ["[]", "null", '{"services": {"nginx": "x"}}'])
def test_checkout_read_fails_clearly_on_a_non_object_without_reading_it_another_way(checkout, answer):
    write_stale_override(checkout)
    run = Recorder({"compose version": (0, "2.40.3\n", ""), "--profile * config --services": (0, "relay\nweb\n", ""),
                    "config --format json": (0, answer, "")})
    with pytest.raises(CheckoutError, match="config --format json` in .* did not answer with a JSON object"):
        Checkout(sc.SentryCompose(checkout, run, "docker", timeout=60)).read()
    assert [c for c, limit in run.calls if "--format json" in c] == ["config --format json"]


def test_the_restart_plan_fails_clearly_on_a_null_config(checkout):
    """The nginx decision reads the config: null was an AttributeError in the restart program and module."""
    compose = sc.SentryCompose(checkout, lambda argv: (0, "null\n", ""))
    restarter = sc.RelayRestart(compose, (24, 8, 0))
    with pytest.raises(sc.ComposeError, match="did not answer with a JSON object"):
        restarter.plan(["relay"], ["relay", "nginx"])
