# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A self-hosted Sentry checkout: the collection's one home of what it knows about one.

Its files (docker-compose.yml, .env and .env.custom read as Compose reads
them, relay/config.yml), the Relay release it runs and how that release
measures memory, Relay's threshold, the compose project and its containers,
and the merged config as the host's Compose v2 resolves it (Checkout:
services, profiles, workers, limit keys, override entries).

Standard library only: the modules import it through Ansible's module_utils,
and the host programs import it by its file name from beside them (the
host_program module ships it with the module_utils it imports).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import tempfile
from contextlib import contextmanager

# Imported as part of the collection (modules, filters), the collection's own module_utils; imported by its file name
# (a host program), the copies beside it, which the host_program module ships with it.
if __name__.startswith("ansible_collections."):
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_program as hp
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import managed_file as mf
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import yaml_text as yt
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose as sc
else:
    import host_memory as hm  # pylint: disable=import-error
    import host_program as hp  # pylint: disable=import-error
    import managed_file as mf  # pylint: disable=import-error
    import yaml_text as yt  # pylint: disable=import-error
    import sentry_compose as sc  # pylint: disable=import-error

# Where the checkout is when nothing names one: sentry_selfhosted_dir's default, and the modules' project_dir's.
DEFAULT_PROJECT_DIR = "/opt/sentry"
# Relay's health.max_memory_percent when relay/config.yml sets none: the collection's one copy of Relay's default.
DEFAULT_RELAY_THRESHOLD = 0.95
# The compose project of a checkout whose .env files name none (upstream's .env names this one).
DEFAULT_COMPOSE_PROJECT = "sentry-self-hosted"
RELAY_CONFIG = os.path.join("relay", "config.yml")


def checkout_missing(project_dir):
    """The names of a checkout's compose file, .env and relay folder that ``project_dir`` lacks."""
    return [name for name in (sc.COMPOSE_FILE, sc.ENV_FILES[0], "relay") if not os.path.exists(os.path.join(project_dir, name))]


def is_selfhosted_checkout(project_dir):
    """A checkout has its compose file, .env and relay folder."""
    return not checkout_missing(project_dir)


# --- the checkout's files, its Relay release, and how that release measures --

def parse_version(text):
    """"24.8.0" -> (24, 8, 0); anything that is not a release -> None."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", (text or "").strip())
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


def read_text_lines(path, notes=None):
    """The lines of a text file an operator edits, or None when it is absent.

    Any bytes are accepted: a line that is not UTF-8 (a Latin-1 byte, say) is
    read with the bad bytes replaced and ``notes`` gets a line naming the
    file and the line number, so a stray byte never stops a host program.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except (IOError, OSError):
        return None
    lines = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("utf-8", "replace"))
            if notes is not None:
                notes.append("%s line %d is not UTF-8: read with the bad bytes replaced" % (path, number))
    return lines


# A .env file is read as Compose v2 reads it (compose-go's dotenv parser), so
# the Relay release, RELAY_IMAGE and COMPOSE_PROJECT_NAME the collection sees
# are the ones Compose runs. Its two kinds of blank: Go's unicode.IsSpace (a
# line's start, after a key, an unquoted value's end) and the narrower one it
# skips after "export" and "=" (no line breaks).
_GO_SPACE = u"\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
            u"\u2028\u2029\u202f\u205f\u3000"
_ENV_BLANK = u"\t\v\f\r \x85\xa0"
_ENV_EXPORT = re.compile(r"^export[\t\n\f\r ]+")
# A quoted value ends at the first quote not escaped by an odd run of backslashes.
_ENV_QUOTED = {"'": re.compile(r"'((?:[^'\\]|\\.)*)'"), '"': re.compile(r'"((?:[^"\\]|\\.)*)"')}
# The escapes Compose expands in a double-quoted value; any other backslash stays as written.
_ENV_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_ENV_ESCAPED = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                "$": "$", '"': '"', "\\": "\\"}


def _env_escape(match):
    """One escape of a double-quoted .env value, as Compose expands it (Go's rules, \\0 before an octal)."""
    escape = match.group(0)[1:]
    if escape[0] != "0":
        # "\c" is matched but is no Go escape: Compose keeps it as written.
        return _ENV_ESCAPED.get(escape, match.group(0))
    # Compose drops the 0 and reads what is left as Go does: three octal digits up to \377, else as written.
    digits = escape[1:]
    if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
        return chr(int(digits, 8))
    return "\\" + digits


def _env_value(text):
    """The value after "=" as Compose reads it, or None for a quote that does not close on its line."""
    text = text.lstrip(_ENV_BLANK)
    if not text or text[0] not in _ENV_QUOTED:
        # An inline comment starts at " #" (a space, not a tab); a "#" elsewhere is the value's.
        return text.split(" #", 1)[0].rstrip(_GO_SPACE)
    match = _ENV_QUOTED[text[0]].match(text)
    if match is None:
        # Compose reads such a value on into the next lines; this reader does not.
        return None
    # Whatever follows the closing quote (a comment) is not the value's.
    if text[0] == "'":
        # Single quotes are literal but for an escaped single quote.
        return match.group(1).replace("\\'", "'")
    return _ENV_ESCAPE.sub(_env_escape, match.group(1))


def _env_assignment(line):
    """(key, value) of one .env line as Compose reads it, or None for a blank, a comment or a line it cannot read."""
    text = line.lstrip(_GO_SPACE)
    if not text or text.startswith("#"):
        return None
    key, equals, rest = _ENV_EXPORT.sub(u"", text, 1).lstrip(_ENV_BLANK).partition("=")
    if not equals:
        return None
    value = _env_value(rest)
    if value is None:
        return None
    return key.rstrip(_GO_SPACE), value


def read_env_file(path, notes=None):
    """KEY=VALUE lines of a compose .env file as Compose v2 reads them (no interpolation), or {} when absent.

    Read as compose-go's dotenv parser reads them: a leading byte-order mark,
    "export KEY=value", blanks around the key and the "=", an inline comment
    after an unquoted value (" #"), single-quoted values taken literally,
    double-quoted values with escapes (\\n, \\", \\\\ ...) and a comment after
    the closing quote. A line it cannot read (no "=", a quote that does not
    close on its line) is passed over.
    """
    values = {}
    lines = read_text_lines(path, notes) or []
    if lines and lines[0].startswith(u"\ufeff"):
        # An editor's byte-order mark: Compose skips it, it is not the first key's.
        lines[0] = lines[0][1:]
    for line in lines:
        assignment = _env_assignment(line)
        if assignment is not None:
            values[assignment[0]] = assignment[1]
    return values


def checkout_env(project_dir, notes=None):
    """The checkout's environment as compose sees it: .env.custom wins over .env."""
    values = {}
    for name in sc.ENV_FILES:
        values.update(read_env_file(os.path.join(project_dir, name), notes))
    return values


def relay_release(env):
    """Relay's release from RELAY_IMAGE, e.g. (24, 8, 0), or None (nightly, digest, unset)."""
    image = env.get("RELAY_IMAGE", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return parse_version(tag)


def relay_measures(release, mode, relay_limited):
    """How this Relay release measures memory on this host.

    Returns "host-total-free" (before 24.7.1: MemTotal - MemFree),
    "host" (MemTotal - MemAvailable of the whole host) or "cgroup" (the relay
    container's own anon memory against its limit). An unknown release is
    taken to be a current one.
    """
    if release is not None and release < (24, 7, 1):
        return "host-total-free"
    old_fork = release is not None and release < (25, 6, 0)
    if old_fork and mode == "v2" and not relay_limited:
        return "host"
    return "cgroup"


def relay_view(meminfo, release, mode, relay_cgroup=None, threshold=DEFAULT_RELAY_THRESHOLD, max_bytes=None):
    """The used/total pair Relay's "system memory" probe computes, and its verdict.

    ``relay_cgroup`` is host_memory.read_cgroup_memory() of the relay container, or None
    when it could not be found; then host figures stand in and ``source``
    says so.
    """
    total_ram = meminfo["MemTotal"]
    limited = bool(relay_cgroup and relay_cgroup["limit"] is not None and relay_cgroup["limit"] <= total_ram)
    measures = relay_measures(release, mode, limited)
    if measures == "cgroup" and relay_cgroup is None:
        measures = "host"
        # This release measures its own cgroup; say so, and that the host's figures only stand in for it.
        source = "its own cgroup (relay container not found: no relay container runs, so the host's figures stand in)"
    else:
        source = measures
    if measures == "host-total-free":
        used, total = total_ram - meminfo["MemFree"], total_ram
    elif measures == "host":
        used, total = hm.host_memory_from_meminfo(meminfo)["used"], total_ram
    else:
        used = relay_cgroup["anon"]
        total = min(relay_cgroup["limit"] or total_ram, total_ram)
    threshold_bytes = int(total * threshold)
    reject_by_percent = total > 0 and used / float(total) >= threshold
    reject_by_bytes = max_bytes is not None and used >= max_bytes
    headroom = threshold_bytes - used
    if max_bytes is not None:
        headroom = min(headroom, max_bytes - used)
    return {
        "measures": measures,
        "source": source,
        "release": ".".join(str(p) for p in release) if release else None,
        "used": used,
        "total": total,
        "used_percent": round(100.0 * used / total, 2) if total else 0.0,
        "threshold": threshold,
        "threshold_bytes": threshold_bytes,
        "max_memory_bytes": max_bytes,
        "headroom": headroom,
        "would_reject": bool(reject_by_percent or reject_by_bytes),
    }


# --- the one Relay view: figure, threshold, project, notes -------------------

_HEALTH_BLOCK = re.compile(r"^health\s*:\s*(\{.*\})?\s*$")


def _scan_health_key(lines, key):
    """``health.<key>`` of a block-style (or one-line flow) YAML file, without PyYAML.

    Hosts need not have PyYAML; Relay's config is plain block YAML, as
    upstream's config.example.yml writes it.
    """
    in_health = False
    for line in lines:
        text = line.split(" #", 1)[0].rstrip()
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if not text[0].isspace():
            match = _HEALTH_BLOCK.match(text)
            in_health = bool(match)
            if match and match.group(1):
                found = re.search(r"[{,]\s*%s\s*:\s*([^,}\s]+)" % re.escape(key), match.group(1))
                return found.group(1) if found else None
            continue
        if in_health:
            found = re.match(r"^\s+%s\s*:\s*(\S+)$" % re.escape(key), text)
            if found:
                return found.group(1)
    return None


def relay_config_threshold(project_dir, notes=None):
    """Relay's ``health.max_memory_percent`` from the checkout: (fraction, where it came from).

    Read from ``relay/config.yml`` (with PyYAML when it is importable, else a
    small reader of block YAML), else Relay's default 0.95. The value is
    returned as written; callers refuse one outside (0, 1].
    """
    notes = [] if notes is None else notes
    path = os.path.join(project_dir, RELAY_CONFIG)
    lines = read_text_lines(path, notes)
    if lines is None:
        return DEFAULT_RELAY_THRESHOLD, "Relay's default"
    try:
        import yaml
    except ImportError:
        value = _scan_health_key(lines, "max_memory_percent")
    else:
        try:
            data = yaml.safe_load("\n".join(lines))
            value = (data.get("health") or {}).get("max_memory_percent") if isinstance(data, dict) else None
        except (yaml.YAMLError, AttributeError) as exc:
            notes.append("%s could not be read for the threshold: %s" % (path, exc))
            value = None
    if value is None:
        return DEFAULT_RELAY_THRESHOLD, "Relay's default"
    try:
        return float(value), path
    except (TypeError, ValueError):
        notes.append("%s: health.max_memory_percent %r is not a number; Relay's default applies" % (path, value))
        return DEFAULT_RELAY_THRESHOLD, "Relay's default"


def compose_project_name(env, given=None):
    """The checkout's compose project: ``given``, else COMPOSE_PROJECT_NAME of its .env files, else upstream's name."""
    return given or env.get("COMPOSE_PROJECT_NAME") or DEFAULT_COMPOSE_PROJECT


def relay_figure(project_dir, root="/", run=None, docker="docker", threshold=None, max_bytes=None,
                 compose_project=None, meminfo=None, containers=None):
    """Relay's memory figure on this host, as Relay computes it, and what it rests on.

    The one place the figure is assembled: memory_info, the alert program and
    the restart program call it. The release and the compose project come from
    the checkout's .env files, the threshold from ``threshold`` when given,
    else from relay/config.yml. The project's containers are listed with
    ``run`` unless ``containers`` (already read with container_memory) are
    given; without either, host figures stand in for Relay's container.

    Returns a dict: ``relay`` (relay_view() plus ``threshold_source``),
    ``project``, ``cgroup_mode``, ``meminfo``, ``containers``,
    ``containers_listed`` and ``notes`` (plain sentences).
    """
    notes = []
    env = checkout_env(project_dir, notes)
    release = relay_release(env)
    if not os.path.isdir(project_dir):
        notes.append(
            "the self-hosted checkout %s does not exist: set sentry_selfhosted_dir (in the inventory, or "
            "-e sentry_selfhosted_dir=PATH; the module's option is project_dir) to the checkout's directory. "
            "Until then the Relay release is unknown (taken as a current one) and the threshold is Relay's default"
            % project_dir)
    elif release is None:
        notes.append("the Relay release is unknown (no RELAY_IMAGE tag in %s/.env): taken as a current one" % project_dir)
    if threshold is None:
        threshold, source = relay_config_threshold(project_dir, notes)
    else:
        source = "option"
    if not 0 < threshold <= 1:
        raise hm.MemoryReadError("relay threshold %s (from %s) is outside (0, 1]" % (threshold, source))
    project = compose_project_name(env, compose_project)
    meminfo = hm.read_meminfo(root) if meminfo is None else meminfo
    mode = hm.cgroup_mode(root)
    listed = containers is not None
    if containers is None:
        containers = []
        if run is not None:
            try:
                containers = list_compose_containers(run, project, docker)
            except hm.MemoryReadError as exc:
                notes.append("containers were not listed: %s" % exc)
            else:
                listed = True
                container_memory(containers, mode, root)
                notes.extend("%s: %s" % (c["name"], c["error"]) for c in containers if "error" in c)
    relay_container = next((c for c in containers if c["service"] == "relay" and "error" not in c), None)
    view = relay_view(meminfo, release, mode, relay_container, threshold, max_bytes)
    view["threshold_source"] = source
    return {"relay": view, "project": project, "cgroup_mode": mode, "meminfo": meminfo,
            "containers": containers, "containers_listed": listed, "notes": notes}


# --- compose project containers -------------------------------------------

def list_compose_containers(run, project, docker="docker"):
    """Running containers of a compose project with their cgroup figures' keys.

    ``run`` takes an argv list and returns (rc, stdout, stderr), so a module
    passes ``module.run_command`` and a host program passes subprocess. Returns
    a list of dicts: id, name, service, pid (None when docker gives no process),
    configured_limit (HostConfig.Memory, None for none) and cgroupns.
    """
    rc, out, err = run([docker, "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=%s" % project])
    if rc != 0:
        raise hm.MemoryReadError("docker ps failed: %s" % (err or out).strip())
    ids = out.split()
    if not ids:
        return []
    rc, out, err = run([docker, "inspect"] + ids)
    if rc != 0:
        raise hm.MemoryReadError("docker inspect failed: %s" % (err or out).strip())
    try:
        items = json.loads(out)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("Id"), str) for i in items):
        raise hm.MemoryReadError("docker inspect did not answer with a JSON list of containers: %.200r" % out)
    return [_inspected_container(item) for item in items]


_REQUIRED = object()
_KIND_NAMES = {dict: "a mapping", str: "a string", int: "an integer"}


def _inspect_field(item, path, kind, default=_REQUIRED):
    """The field at ``path`` (its keys, e.g. ("State", "Pid")) of one docker inspect item, if it is of ``kind``.

    Every field below the item's Id is read here: docker inspect's JSON comes
    from another program (a proxy, a wrapper, another engine), and a module or
    a root-run host program must answer with a sentence, not a traceback. A
    field that is absent, null or of another type gives ``default`` when the
    caller can do without it, else host_memory's MemoryReadError naming the
    container and the field.
    """
    value = item
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    # bool is an int to Python, but true is no process id and no size.
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if default is not _REQUIRED:
        return default
    raise hm.MemoryReadError("docker inspect of container %s: %s is %.60s, not %s"
                             % (item["Id"][:12], ".".join(path), json.dumps(value), _KIND_NAMES[kind]))


def _process_id(value):
    """``value`` when it is a process id (a positive integer), else None: only such a pid may name a /proc entry."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _inspected_container(item):
    """One container's dict from its docker inspect item (see list_compose_containers)."""
    # docker gives every container a State and a Config: an item without them is no container's.
    _inspect_field(item, ("State",), dict)
    _inspect_field(item, ("Config",), dict)
    memory = _inspect_field(item, ("HostConfig", "Memory"), int, None)
    return {
        "id": item["Id"],
        "name": _inspect_field(item, ("Name",), str).lstrip("/"),
        # A label key has dots in it, hence paths of keys rather than dotted strings.
        "service": _inspect_field(item, ("Config", "Labels", "com.docker.compose.service"), str, ""),
        # Pid 0 is a container that stopped after docker ps: it has no process to read.
        "pid": _process_id(_inspect_field(item, ("State", "Pid"), int, None)),
        # Memory 0 is docker's "no limit".
        "configured_limit": memory if memory and memory > 0 else None,
        "cgroupns": _inspect_field(item, ("HostConfig", "CgroupnsMode"), str, ""),
    }


def container_memory(containers, mode, root="/"):
    """Add each container's cgroup figures to its dict (in place); returns the list.

    A container that cannot be read gets an ``error`` (a sentence) instead of figures.
    """
    version = hm.memory_cgroup_version(mode)
    for container in containers:
        pid = _process_id(container.get("pid"))
        if pid is None:
            container["error"] = "no process to read its memory from: docker inspect gave no process id (State.Pid)"
            continue
        try:
            figures = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(pid, mode, root), version)
        except (hm.MemoryReadError, ValueError) as exc:
            container["error"] = str(exc)
            continue
        container.update(figures)
    return containers


# --- the merged config, through Compose ------------------------------------

def checkout_argument_spec(**options):
    """The options of a module that reads the checkout through the docker CLI (module_compose's), with its own."""
    spec = dict(project_dir=dict(type="path", default=DEFAULT_PROJECT_DIR),
                docker=dict(type="str", default="docker"),
                docker_timeout=dict(type="int", default=sc.DOCKER_TIMEOUT))
    spec.update(options)
    return spec


def module_compose(module, docker, run=None):
    """The SentryCompose a module calls Docker through, on its project_dir with its docker_timeout.

    Calls run through host_program.run_command, the collection's one way to run a command with a time
    limit (AnsibleModule.run_command has none); SentryCompose decides each call's limit. ``run``, of the same
    shape, lets tests answer for the docker CLI. A docker_timeout under 1 s fails the module.
    """
    seconds = module.params["docker_timeout"]
    if seconds < 1:
        module.fail_json(msg="docker_timeout must be at least 1 second, got %s" % seconds)
    return sc.SentryCompose(module.params["project_dir"], run or hp.run_command, docker, timeout=seconds)


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
        self.override = mf.ManagedFile(os.path.join(self.project_dir, sc.OVERRIDE_FILE))
        self.tmpdir = tmpdir
        self.notes = []

    @contextmanager
    def with_override(self, text):
        """The compose files of the checkout with ``text`` as its override, in a temporary file, for compose to read."""
        handle, candidate = tempfile.mkstemp(prefix="compose-limits-", suffix=".yml", dir=self.tmpdir)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
            yield [os.path.join(self.project_dir, sc.COMPOSE_FILE), candidate]
        finally:
            os.unlink(candidate)

    def hygiene(self):
        """Check the override's entries against the services the checkout's own compose file defines.

        Runs first: an entry for a service the checkout no longer has breaks
        every compose command (install.sh included). The collection's own are
        dropped by the next write (returned as stale); the operator's are an
        error naming them. Returns (stale, managed) service names.
        """
        entries = yt.YamlText(self.override.read()).service_entries()
        managed = [e["name"] for e in entries if e["managed"]]
        if not entries:
            return [], managed
        try:
            defined = set(self.compose.call("--profile", "*", "config", "--services",
                                            files=[os.path.join(self.project_dir, sc.COMPOSE_FILE)]).split())
        except sc.DOCKER_FAULTS:
            raise
        except sc.ComposeError as exc:
            raise CheckoutError("docker compose cannot read the checkout's own %s: %s" % (sc.COMPOSE_FILE, exc))
        stale = [e for e in entries if e["name"] not in defined and not e["complete"]]
        operator = [e for e in stale if not e["ours"]]
        if operator:
            raise CheckoutError(
                "%s names services that %s no longer defines: %s. These entries are your own (not written by "
                "sentry_selfhosted.memory): remove them, or give them an image; nothing was changed."
                % (self.override.path, sc.COMPOSE_FILE, ", ".join("%s (line %d)" % (e["name"], e["line"]) for e in operator)),
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
        except sc.DOCKER_FAULTS:
            raise
        except sc.ComposeError as exc:
            first = exc
        doc = yt.YamlText(self.override.read())
        before = doc.text()
        doc.drop_stale()
        if doc.text() == before:
            raise CheckoutError("docker compose cannot read the checkout with its override: %s" % first)
        try:
            with self.with_override(doc.text()) as files:
                config, services = self.compose.config(files=files), self.compose.services(files=files)
        except sc.ComposeError:
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
        except sc.DOCKER_FAULTS + (mf.ManagedFileError,) as exc:
            raise CheckoutError(str(exc))

    def _read(self):
        if not is_selfhosted_checkout(self.project_dir):
            raise CheckoutError("%s is not a self-hosted Sentry checkout (it needs %s, .env and relay/)" % (self.project_dir, sc.COMPOSE_FILE))
        try:
            version = self.compose.version()
        except sc.ComposeError as exc:
            raise CheckoutError(str(exc))
        stale, managed = self.hygiene()
        engine = sc.detect_engine(self.compose.docker, self.compose.run_docker)
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
