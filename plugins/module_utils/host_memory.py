# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a Linux host's memory state, and compute the figure Relay computes.

This is the collection's one parser of /proc and of cgroup memory files. It
uses only the standard library, so the same file serves the modules (through
Ansible's module_utils) and the small programs the roles install on hosts
(copied beside them), and every path is read below ``root`` so tests can point
it at a fixture tree.

All sizes are integers of bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os
import re

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value.
CGROUP_V1_UNLIMITED = 0x7FFFFFFFFFFFF000

RELAY_READY_PATH = "/api/relay/healthcheck/ready/"
DEFAULT_COMPOSE_PROJECT = "sentry-self-hosted"
DEFAULT_RELAY_THRESHOLD = 0.95
# The collection's units of memory (every module, filter and host program takes them from here).
MIB = 1024 ** 2
GIB = 1024 ** 3


def human_bytes(size):
    """A size for people, the collection's one formatter: "512 B", "64.0 MiB", "-1.5 GiB"; "none" for None.

    The human_bytes filter, the modules' messages and the alerts program all use it.
    """
    if size is None:
        return "none"
    size = float(size)
    sign = "-" if size < 0 else ""
    size = abs(size)
    if size < 1024:
        return "%s%d B" % (sign, size)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024.0
        if size < 1024:
            return "%s%.1f %s" % (sign, size, unit)
    return "%s%.1f TiB" % (sign, size / 1024.0)


class MemoryReadError(Exception):
    """A file that must be readable could not be read or understood."""


def _path(root, *parts):
    return os.path.join(root, *[p.lstrip("/") for p in parts])


def _read(root, *parts):
    path = _path(root, *parts)
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise MemoryReadError("cannot read %s: %s" % (path, exc))


def _read_optional(root, *parts):
    try:
        return _read(root, *parts)
    except MemoryReadError:
        return None


def _key_values(text):
    """Parse "key value" lines (memory.stat, vmstat) into a dict of ints."""
    values = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].lstrip("-").isdigit():
            values[fields[0]] = int(fields[1])
    return values


# --- /proc -----------------------------------------------------------------

def read_meminfo(root="/"):
    """/proc/meminfo as a dict of bytes (fields given in kB are converted)."""
    text = _read(root, "proc/meminfo")
    info = {}
    for line in text.splitlines():
        match = re.match(r"^([^:]+):\s+(\d+)(?:\s+(kB))?", line)
        if match:
            value = int(match.group(2))
            info[match.group(1)] = value * 1024 if match.group(3) else value
    for required in ("MemTotal", "MemFree"):
        if required not in info:
            raise MemoryReadError("%s has no %s line" % (_path(root, "proc/meminfo"), required))
    return info


def unescape_octal(field):
    """A path as the kernel (/proc/swaps, /proc/self/mounts) and fstab write it: space, tab, newline
    and backslash as octal escapes (\\040, \\011, \\012, \\134)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_swaps(root="/"):
    """Active swap areas from /proc/swaps; sizes in bytes."""
    text = _read(root, "proc/swaps")
    areas = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        path = unescape_octal(fields[0])
        areas.append({
            "path": path,
            "type": fields[1],
            "size": int(fields[2]) * 1024,
            "used": int(fields[3]) * 1024,
            "priority": int(fields[4]),
        })
    return areas


def read_vmstat(root="/"):
    return _key_values(_read(root, "proc/vmstat"))


def read_sysctl(name, root="/"):
    """A numeric sysctl such as ``vm.swappiness``, or None when absent."""
    text = _read_optional(root, "proc/sys", name.replace(".", "/"))
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


MEMORY_SYSCTLS = (
    "vm.swappiness",
    "vm.vfs_cache_pressure",
    "vm.overcommit_memory",
    "vm.overcommit_ratio",
    "vm.min_free_kbytes",
)


def read_memory_sysctls(root="/"):
    return dict((name, read_sysctl(name, root)) for name in MEMORY_SYSCTLS)


def read_pressure(root="/"):
    """/proc/pressure/memory as {"some": {...}, "full": {...}}, or None without PSI."""
    text = _read_optional(root, "proc/pressure/memory")
    if text is None:
        return None
    pressure = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        entry = {}
        for field in fields[1:]:
            key, value = field.split("=", 1)
            entry[key] = int(value) if key == "total" else float(value)
        pressure[fields[0]] = entry
    return pressure


def read_zfs_arc_size(root="/"):
    """Bytes held by the ZFS ARC (not counted in MemAvailable), or None."""
    text = _read_optional(root, "proc/spl/kstat/zfs/arcstats")
    if text is None:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "size":
            return int(fields[2])
    return None


def read_mounts(root="/"):
    """/proc/self/mounts: source, target, fstype and the option string (e.g. "rw,compress=zstd:3")."""
    mounts = []
    for line in (_read_optional(root, "proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append({"source": fields[0], "target": unescape_octal(fields[1]), "fstype": fields[2],
                           "options": fields[3]})
    return mounts


def cgroup_mode(root="/"):
    """"v2" (unified), "hybrid" (v1 controllers plus a cgroup2 tree) or "v1"."""
    mounts = read_mounts(root)
    at_cgroup_root = [m for m in mounts if m["target"] == "/sys/fs/cgroup"]
    if any(m["fstype"] == "cgroup2" for m in at_cgroup_root):
        return "v2"
    if any(m["fstype"] == "cgroup2" for m in mounts):
        return "hybrid"
    if any(m["fstype"] == "cgroup" for m in mounts):
        return "v1"
    return "unknown"


def memory_cgroup_version(mode):
    """Which cgroup interface holds the memory controller in this mode."""
    return 2 if mode == "v2" else 1


# --- host figures ----------------------------------------------------------

def host_memory_from_meminfo(meminfo):
    """The host's RAM figures; ``used`` is MemTotal - MemAvailable as Relay uses."""
    total = meminfo["MemTotal"]
    available = meminfo.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 have no MemAvailable: approximate as they did.
        available = meminfo["MemFree"] + meminfo.get("Cached", 0) + meminfo.get("Buffers", 0)
    used = total - available
    return {
        "total": total,
        "available": available,
        "free": meminfo["MemFree"],
        "used": used,
        "used_percent": round(100.0 * used / total, 2) if total else 0.0,
        "page_cache": meminfo.get("Cached", 0),
        "buffers": meminfo.get("Buffers", 0),
        "anon": meminfo.get("AnonPages", 0),
        "shmem": meminfo.get("Shmem", 0),
        "slab_unreclaimable": meminfo.get("SUnreclaim", 0),
    }


def swap_from_meminfo(meminfo):
    total = meminfo.get("SwapTotal", 0)
    free = meminfo.get("SwapFree", 0)
    return {"total": total, "free": free, "used": total - free}


class ProcfsBackend:
    """Host figures read from /proc (always available)."""

    name = "procfs"

    def __init__(self, root="/"):
        self.root = root

    def meminfo(self):
        return read_meminfo(self.root)


class PsutilBackend:
    """Host figures through psutil, where it is importable on the host.

    psutil serves the figures it reports exactly as the kernel gives them
    (total, free, available = MemAvailable, buffers, shared, swap); the
    details it folds together (page cache, anon, slab) come from the file, so
    both backends return identical figures for the same /proc.
    """

    name = "psutil"

    def __init__(self, psutil_module, root="/"):
        self.psutil = psutil_module
        self.root = root

    def meminfo(self):
        info = read_meminfo(self.root)
        vm = self.psutil.virtual_memory()
        sw = self.psutil.swap_memory()
        info.update({
            "MemTotal": vm.total,
            "MemFree": vm.free,
            "MemAvailable": vm.available,
            "Buffers": vm.buffers,
            "Shmem": vm.shared,
            "SwapTotal": sw.total,
            "SwapFree": sw.free,
        })
        return info


def choose_backend(name="auto", root="/"):
    """psutil when asked for or importable (auto), else /proc parsed here."""
    if name in ("auto", "psutil"):
        try:
            import psutil
        except ImportError:
            if name == "psutil":
                raise MemoryReadError("backend psutil was requested but psutil is not importable on this host")
        else:
            psutil.PROCFS_PATH = _path(root, "proc")
            return PsutilBackend(psutil, root)
    return ProcfsBackend(root)


# --- cgroups ---------------------------------------------------------------

def _parse_limit(text):
    text = (text or "").strip()
    if not text or text == "max":
        return None
    value = int(text)
    return None if value >= CGROUP_V1_UNLIMITED else value


# What a container uses: the memory.stat keys of what its limit cannot reclaim.
# Page cache ("file", "active_file", "inactive_file") is left out: inside a
# limit the kernel drops it before it kills anything, and it is what makes
# memory.current, memory.peak (v1: usage_in_bytes, max_usage_in_bytes) and
# docker stats (current less inactive_file) overstate a store's use.
# cgroup v2 (Documentation/admin-guide/cgroup-v2.rst, memory.stat): anonymous
# memory, tmpfs and shared memory, kernel stacks, page tables, socket buffers,
# unreclaimable slab and per-cpu data.
UNRECLAIMABLE_V2 = ("anon", "shmem", "kernel_stack", "pagetables", "sock", "slab_unreclaimable", "percpu")
# cgroup v1 (Documentation/admin-guide/cgroup-v1/memory.rst): rss (anonymous
# memory and swap cache) and shmem, over the hierarchy; kernel memory is not
# broken down there.
UNRECLAIMABLE_V1 = ("total_rss", "total_shmem")


def read_cgroup_memory(cgroup_dir, version):
    """Memory figures of one cgroup directory (absolute path).

    ``use`` is what the container uses: what its limit cannot reclaim
    (UNRECLAIMABLE_V2 or UNRECLAIMABLE_V1), never page cache; the sizing, the
    audit and the alerts all take this figure. ``usage`` is what ``docker
    stats`` shows (usage less inactive file pages; it still holds active page
    cache); ``anon`` is what Relay counts (``anon`` on v2, ``total_rss`` on v1).
    """
    if version == 2:
        stat = _key_values(_read(cgroup_dir, "memory.stat"))
        current = int(_read(cgroup_dir, "memory.current").strip())
        limit = _parse_limit(_read_optional(cgroup_dir, "memory.max"))
        peak_text = _read_optional(cgroup_dir, "memory.peak")
        swap_text = _read_optional(cgroup_dir, "memory.swap.current")
        inactive_file = stat.get("inactive_file", 0)
        anon = stat.get("anon", 0)
        use = sum(stat.get(key, 0) for key in UNRECLAIMABLE_V2)
    else:
        stat = _key_values(_read(cgroup_dir, "memory.stat"))
        current = int(_read(cgroup_dir, "memory.usage_in_bytes").strip())
        limit = _parse_limit(_read_optional(cgroup_dir, "memory.limit_in_bytes"))
        peak_text = _read_optional(cgroup_dir, "memory.max_usage_in_bytes")
        memsw = _read_optional(cgroup_dir, "memory.memsw.usage_in_bytes")
        swap_text = str(max(0, int(memsw) - current)) if memsw and memsw.strip().isdigit() else None
        inactive_file = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        anon = stat.get("total_rss", stat.get("rss", 0))
        use = anon + stat.get("total_shmem", stat.get("shmem", 0))
    return {
        "use": use,
        "current": current,
        "usage": max(0, current - inactive_file),
        "anon": anon,
        "limit": limit,
        "peak": int(peak_text) if peak_text and peak_text.strip().isdigit() else None,
        "swap": int(swap_text) if swap_text and swap_text.strip().isdigit() else None,
    }


def cgroup_dir_of_pid(pid, mode, root="/"):
    """The memory cgroup directory of a process, as seen from ``root``."""
    text = _read(root, "proc/%d/cgroup" % pid)
    for line in text.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if mode == "v2" and hierarchy == "0":
            return _path(root, "sys/fs/cgroup", path)
        if mode != "v2" and "memory" in controllers.split(","):
            return _path(root, "sys/fs/cgroup/memory", path)
    raise MemoryReadError("process %d has no memory cgroup in %s" % (pid, _path(root, "proc/%d/cgroup" % pid)))


# --- Relay's view ----------------------------------------------------------

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
    values = read_env_file(os.path.join(project_dir, ".env"), notes)
    values.update(read_env_file(os.path.join(project_dir, ".env.custom"), notes))
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

    ``relay_cgroup`` is read_cgroup_memory() of the relay container, or None
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
        used, total = host_memory_from_meminfo(meminfo)["used"], total_ram
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

RELAY_CONFIG = os.path.join("relay", "config.yml")
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
        raise MemoryReadError("relay threshold %s (from %s) is outside (0, 1]" % (threshold, source))
    project = compose_project_name(env, compose_project)
    meminfo = read_meminfo(root) if meminfo is None else meminfo
    mode = cgroup_mode(root)
    listed = containers is not None
    if containers is None:
        containers = []
        if run is not None:
            try:
                containers = list_compose_containers(run, project, docker)
            except MemoryReadError as exc:
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
        raise MemoryReadError("docker ps failed: %s" % (err or out).strip())
    ids = out.split()
    if not ids:
        return []
    rc, out, err = run([docker, "inspect"] + ids)
    if rc != 0:
        raise MemoryReadError("docker inspect failed: %s" % (err or out).strip())
    try:
        items = json.loads(out)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("Id"), str) for i in items):
        raise MemoryReadError("docker inspect did not answer with a JSON list of containers: %.200r" % out)
    return [_inspected_container(item) for item in items]


_REQUIRED = object()
_KIND_NAMES = {dict: "a mapping", str: "a string", int: "an integer"}


def _inspect_field(item, path, kind, default=_REQUIRED):
    """The field at ``path`` (its keys, e.g. ("State", "Pid")) of one docker inspect item, if it is of ``kind``.

    Every field below the item's Id is read here: docker inspect's JSON comes
    from another program (a proxy, a wrapper, another engine), and a module or
    a root-run host program must answer with a sentence, not a traceback. A
    field that is absent, null or of another type gives ``default`` when the
    caller can do without it, else a MemoryReadError naming the container and
    the field.
    """
    value = item
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    # bool is an int to Python, but true is no process id and no size.
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if default is not _REQUIRED:
        return default
    raise MemoryReadError("docker inspect of container %s: %s is %.60s, not %s"
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
    version = memory_cgroup_version(mode)
    for container in containers:
        pid = _process_id(container.get("pid"))
        if pid is None:
            container["error"] = "no process to read its memory from: docker inspect gave no process id (State.Pid)"
            continue
        try:
            figures = read_cgroup_memory(cgroup_dir_of_pid(pid, mode, root), version)
        except (MemoryReadError, ValueError) as exc:
            container["error"] = str(exc)
            continue
        container.update(figures)
    return containers


def top_processes(root="/", count=5, leave_out=None):
    """The ``count`` processes with the largest resident set, from /proc/*/status.

    ``leave_out`` is a pid whose process and ancestors (below pid 1) are not
    listed: the caller's own chain (the module's Python, AnsiballZ,
    ansible-playbook), which is not what uses the host's memory."""
    found, parent = [], {}
    for entry in os.listdir(_path(root, "proc")):
        if not entry.isdigit():
            continue
        text = _read_optional(root, "proc", entry, "status")
        if not text:
            continue
        name, rss = None, None
        for line in text.splitlines():
            if line.startswith("Name:"):
                name = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            elif line.startswith("PPid:"):
                parent[int(entry)] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
        if rss:
            found.append({"pid": int(entry), "name": name, "rss": rss})
    own = set()
    pid = leave_out
    while pid and pid > 1 and pid not in own:
        own.add(pid)
        pid = parent.get(pid)
    found = [p for p in found if p["pid"] not in own]
    found.sort(key=lambda p: p["rss"], reverse=True)
    return found[:count]


# --- sizing rules shared by the report and the roles ------------------------


def recommended_swap_bytes(ram_total):
    """Swap for a self-hosted Sentry host: half of RAM, at least 2 GiB, at most 16 GiB.

    Half of RAM holds the cold anonymous memory of the ~60 mostly idle
    consumers (the part that lets Relay's figure fall) without letting a
    runaway leak thrash for long; upstream's own CI gives 16 GiB hosts 16 GiB.
    Rounded up to whole GiB.
    """
    half = -(-ram_total // 2 // GIB) * GIB
    return max(2 * GIB, min(16 * GIB, half))


# --- peaks of use, remembered between runs ----------------------------------
# No cgroup file keeps a peak of what a container uses (memory.peak counts page
# cache), so the collection samples it: the alerts program every minute, and
# compose_limits on every run. Both keep the largest use of each service, with
# its time, in one file, which compose_limits plans from. Its shape:
#   {"version": 1, "since": <epoch of the first record>,
#    "services": {"<service>": {"mb": <MiB, rounded up>, "at": <epoch>}}}

PEAKS_VERSION = 1
DEFAULT_PEAKS_FILE = "/var/lib/sentry-selfhosted-memory/use-peaks.json"


def is_number(value):
    """A finite int or float, not a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and not math.isnan(value) and not math.isinf(value))


def peaks_shape_error(peaks):
    """Why a loaded peaks history cannot be used, or None."""
    if not isinstance(peaks, dict) or peaks.get("version") != PEAKS_VERSION:
        return "not a version %d peaks history" % PEAKS_VERSION
    if not is_number(peaks.get("since")) or peaks["since"] < 0:
        return "its 'since' is not a time"
    services = peaks.get("services")
    if not isinstance(services, dict):
        return "its 'services' is not a mapping"
    for name, record in services.items():
        if not (isinstance(record, dict) and isinstance(record.get("mb"), int) and not isinstance(record["mb"], bool)
                and 0 < record["mb"] < 1 << 40 and is_number(record.get("at"))):
            return "the record of %r is not {mb: positive integer, at: time}" % (name,)
    return None


def use_mb_by_service(containers):
    """{service: MiB it uses, rounded up} of memory_info's containers; a service's replicas count by their largest.

    Containers with an error, without a service or without a positive ``use`` are passed over."""
    found = {}
    for container in containers or []:
        service, use = container.get("service"), container.get("use")
        if service and not container.get("error") and is_number(use) and use > 0:
            found[service] = max(found.get(service, 0), int(-(-int(use) // MIB)))
    return found


def record_peaks(peaks, use_mb, now, leave_out=()):
    """A new history: ``peaks`` (None for none) with each service's use (``use_mb_by_service``) where it is a new high.

    The services in ``leave_out`` are passed over (suspected leaks: a leaked
    peak must not lift the plan), and their old records dropped.
    """
    peaks = peaks or {"version": PEAKS_VERSION, "since": int(now), "services": {}}
    services = dict((name, dict(record)) for name, record in peaks["services"].items() if name not in leave_out)
    for service, mb in use_mb.items():
        if service not in leave_out and mb > services.get(service, {}).get("mb", 0):
            services[service] = {"mb": mb, "at": int(now)}
    return {"version": PEAKS_VERSION, "since": peaks["since"], "services": services}
