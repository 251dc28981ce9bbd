# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one set of checkouts the tests and benchmarks use, and the one reader of their compose files.

The project's own fixtures are always here; real self-hosted releases lie in
../shared/upstream beside development checkouts only, and tests that use them
are skipped where that folder is absent. tests/conftest.py puts this folder on
sys.path; a benchmark or stand-alone script imports conftest first.
"""

import os

import yaml

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_memory import checkout_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
UPSTREAM = os.path.join(os.path.dirname(REPO), "shared", "upstream", "self-hosted")
# The project's two checkouts: the current layout (12 services) and 24.8's (worker, cron).
FIXTURE = os.path.join(FIXTURES, "checkout")
FIXTURE_24 = os.path.join(FIXTURES, "checkout-24.8")
# SENTRY_TASKWORKER_CONCURRENCY and LAUNCHPAD_TASKWORKER_CONCURRENCY default to 4 in upstream's .env.
DEFAULT_WORKERS = 4


def _version(tag):
    return tuple(int(part) for part in tag.split("."))


def upstream_releases():
    """The upstream releases beside the checkout, oldest first ([] without ../shared)."""
    if not os.path.isdir(UPSTREAM):
        return []
    return sorted((t for t in os.listdir(UPSTREAM) if os.path.isfile(os.path.join(UPSTREAM, t, "docker-compose.yml"))), key=_version)


def upstream(tag):
    """The folder of one upstream release."""
    return os.path.join(UPSTREAM, tag)


def compose_services(path):
    """The services mapping of a checkout's docker-compose.yml, as written (no profiles applied)."""
    with open(os.path.join(path, "docker-compose.yml")) as handle:
        return yaml.safe_load(handle)["services"]


def service_profiles(path):
    """Every service of a checkout with its profiles and workers, as the compose_services module returns them."""
    return [{"name": name, "profiles": list(spec.get("profiles") or []),
             "workers": DEFAULT_WORKERS if name in ("taskworker", "launchpad-taskworker") else None}
            for name, spec in compose_services(path).items()]


def active_services(path, profiles=None):
    """The service names a profile set starts (default: COMPOSE_PROFILES of the checkout's .env and .env.custom)."""
    if profiles is None:
        profiles = set(filter(None, checkout_env(path).get("COMPOSE_PROFILES", "").split(",")))
    return [s["name"] for s in service_profiles(path) if not s["profiles"] or set(s["profiles"]) & set(profiles)]
