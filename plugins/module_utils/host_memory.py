# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a Linux host's memory state: the collection's one home of the host.

This is the collection's one parser of /proc and of cgroup memory files, with
the host's processes, the swap sizing rule and the history of peaks of use (its
merge and its file). What a self-hosted checkout holds (its Relay release and
threshold, its compose project and containers) is sentry_checkout's. Standard
library only (with host_program and sentry_compose, for the peaks file), so the
same file serves the modules (through Ansible's module_utils) and the small
programs the roles install on hosts (copied beside them), and every path is
read below ``root`` so tests can point it at a fixture tree.

All sizes are integers of bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os
import re

# Imported as part of the collection (modules, filters), the collection's own module_utils; imported by its file name
# (a host program), the copies beside it, which the host_program module ships with it.
if __name__.startswith("ansible_collections."):
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_program import (
        UntrustedFileError, read_own_json, write_atomic)
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import UnsafePathError, private_directory
else:
    from host_program import UntrustedFileError, read_own_json, write_atomic  # pylint: disable=import-error
    from sentry_compose import UnsafePathError, private_directory  # pylint: disable=import-error

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value.
CGROUP_V1_UNLIMITED = 0x7FFFFFFFFFFFF000

RELAY_READY_PATH = "/api/relay/healthcheck/ready/"
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


# The file of that history (sentry_selfhosted_peaks_file): root plans from it, so only a regular file of the module's
# own user that nobody else can write is read.
PEAKS_VARIABLE = "sentry_selfhosted_peaks_file"


class PeaksFileError(Exception):
    """The history of peaks cannot be read (another user's file, not JSON) or kept."""


def read_peaks(path):
    """The remembered peaks of use at ``path`` (parsed JSON), or None without a file; PeaksFileError for a file another
    user controls or one that is not JSON (its shape is the memory_budget filter's to check)."""
    try:
        return read_own_json(path)
    except UntrustedFileError as exc:
        raise PeaksFileError("%s (%s) is %s: the plan is not made from a file another user controls. Remove it (or make it "
                             "root's, mode 0600) and run again; nothing was changed." % (path, PEAKS_VARIABLE, exc.problem))
    except (IOError, OSError, ValueError) as exc:
        raise PeaksFileError("%s (%s) cannot be read as JSON (%s); compose_limits_forget_peaks starts the history afresh; "
                             "nothing was changed." % (path, PEAKS_VARIABLE, exc))


def write_peaks(path, peaks):
    """Keep ``peaks`` at ``path`` (0600, in a directory only its owner can change); False when it already says that.

    A record of what the collection saw, like the alerts check's state: not a change an operator configured."""
    text = json.dumps(peaks, sort_keys=True, indent=4) + "\n"
    try:
        same = read_peaks(path) == peaks
    except PeaksFileError:
        same = False  # a damaged file is replaced by the history this plan was made with
    try:
        if same:
            os.chmod(path, 0o600)  # root's alone to read too: it tells what ran and when
            return False
        # 0755, as the timers' units make it (systemd's StateDirectory=): the files in it are root's alone.
        private_directory(os.path.dirname(path), 0o755)
        write_atomic(path, text, 0o600)
    except (IOError, OSError, UnsafePathError) as exc:
        raise PeaksFileError("cannot keep the history of peaks in %s (%s): %s" % (path, PEAKS_VARIABLE, exc))
    return True
