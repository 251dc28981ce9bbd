# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one set of checkouts the tests and benchmarks use, and the one reader of their compose files.

The project's own fixtures are always here (tests/fixtures: the molecule
scenarios copy the same ones); real self-hosted releases lie in
../shared/upstream beside development checkouts only, and tests that use them
are skipped where that folder is absent. tests/conftest.py puts this folder on
sys.path; a benchmark or stand-alone script imports conftest first.
"""

import os
import re

import yaml

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_checkout import checkout_env, workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
UPSTREAM = os.path.join(os.path.dirname(REPO), "shared", "upstream", "self-hosted")
# The project's two checkouts: the current layout (12 services) and 24.8's (worker, cron).
FIXTURE = os.path.join(FIXTURES, "checkout")
FIXTURE_24 = os.path.join(FIXTURES, "checkout-24.8")
# Relay's config fixtures, operators' own files among them (tests/fixtures/relay/README.md).
RELAY_CONFIGS = os.path.join(FIXTURES, "relay")


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


# $$, $NAME, ${NAME}, ${NAME:-default} and ${NAME-default}, as Compose interpolates them.
_VARIABLE = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\})")


def _interpolate(value, env):
    """``value`` (a string, list or mapping from a compose file) with the checkout's variables filled in."""
    if isinstance(value, dict):
        return dict((key, _interpolate(item, env)) for key, item in value.items())
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match):
        dollar, plain, braced, operator, default = match.groups()
        if dollar:
            return "$"
        name = plain or braced
        if name in env and not (operator == ":-" and env[name] == ""):
            return env[name]
        return (default or "") if operator else ""
    return _VARIABLE.sub(one, value)


def service_profiles(path):
    """Every service of a checkout with its profiles and workers, as the compose_services module returns them.

    Workers are the collection's own reading (sentry_checkout.workers) of the
    command and environment with the checkout's .env filled in, as Compose does.
    """
    env = checkout_env(path)
    return [{"name": name, "profiles": list(spec.get("profiles") or []),
             "workers": workers(_interpolate({"command": spec.get("command"), "environment": _mapping(spec.get("environment"))}, env))}
            for name, spec in compose_services(path).items()]


def _mapping(environment):
    """A service's environment as `docker compose config` gives it: a mapping, also where the file has a list."""
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return environment or {}


def active_services(path, profiles=None):
    """The service names a profile set starts (default: COMPOSE_PROFILES of the checkout's .env and .env.custom)."""
    if profiles is None:
        profiles = set(filter(None, checkout_env(path).get("COMPOSE_PROFILES", "").split(",")))
    return [s["name"] for s in service_profiles(path) if not s["profiles"] or set(s["profiles"]) & set(profiles)]


def minimal_checkout(path, relay_release="24.8.0"):
    """The smallest directory the collection takes for a self-hosted checkout, at ``path`` (made); returns ``path``."""
    (path / "relay").mkdir(parents=True)
    (path / "docker-compose.yml").write_text("services: {}\n")
    (path / ".env").write_text("RELAY_IMAGE=getsentry/relay:%s\n" % relay_release)
    return path


# --- a busy host ----------------------------------------------------------------
# The stores whose containers hold page cache on a running host (Kafka reads its
# log segments, ClickHouse its parts, Postgres its tables).
CACHE_HOLDERS = ("kafka", "clickhouse", "postgres")


def busy_use(path, profile, in_use_mb):
    """{service: MiB} a host that has run for a while uses, ``in_use_mb`` in all, for the services of ``profile``.

    Each service holds its share in the proportion of the default table's usual
    figures (kafka most, nginx least), scaled so that they add up to
    ``in_use_mb`` exactly: operators report 12-14 GiB in use on a 16 GiB
    feature-complete host as normal (self-hosted #3053, #3330, #3467).
    """
    from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb
    services = [s for s in service_profiles(path) if not s["profiles"] or profile in s["profiles"]]
    table = mb._merged_table(None)  # pylint: disable=protected-access
    weights = {}
    for service in services:
        row = mb._row(service["name"], table)  # pylint: disable=protected-access
        weights[service["name"]] = row["usual"] + row["per_worker"] * (service["workers"] or 0)
    total = float(sum(weights.values()))
    use = dict((name, int(in_use_mb * weight / total)) for name, weight in weights.items())
    biggest = max(sorted(use), key=lambda n: use[n])
    use[biggest] += in_use_mb - sum(use.values())
    return use


def busy_containers(use_mb, cache_mb=3072):
    """memory_info's containers for ``use_mb``: what they use, and page cache on top in the stores' current and peak."""
    mib = 1024 * 1024
    cache = dict((name, cache_mb * mib // len(CACHE_HOLDERS)) for name in CACHE_HOLDERS)
    return [{"service": name, "name": "sentry-self-hosted-%s-1" % name, "use": mb * mib, "anon": mb * mib,
             "current": mb * mib + cache.get(name, 0), "usage": mb * mib + cache.get(name, 0),
             "peak": mb * mib + cache.get(name, 0)} for name, mb in sorted(use_mb.items())]
