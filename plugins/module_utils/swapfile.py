# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Create, resize and remove a swapfile without leaving the host unprotected.

The logic of the ``swapfile`` module, kept apart from Ansible so the benchmark
can time it directly. Commands run through ``run(argv, timeout=None)`` which
returns ``(rc, stdout, stderr)``; the module passes a wrapper around
``module.run_command``. Standard library only (it runs on the managed host).

File names, for a swapfile ``/dir/name``:

- ``/dir/name``                   the canonical file, the only one in fstab;
- ``/dir/.name.swapstandby``      a standby swapfile, active while the canonical
  one is switched off and rebuilt (an active swapfile cannot be renamed or
  deleted, so the canonical file is rebuilt under its own name while the
  standby keeps swap available);
- ``/dir/.name.swapbuild``        a file being written; it is renamed into place
  only once mkswap succeeded, so a crash never leaves a half-written file under
  a name that is in use. Left-overs of both are removed by the next run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import struct
import time

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFile, replace_file

MIB, GIB = hm.MIB, hm.GIB

# mkswap refuses a swap area of fewer than 10 pages.
MKSWAP_MIN_PAGES = 10

# swapon accepts preallocated (fallocate) extents on these; elsewhere write zeros.
FALLOCATE_FILESYSTEMS = ("ext4", "xfs")

REFUSED_FILESYSTEMS = {
    "tmpfs": "tmpfs lives in memory (and swap)",
    "ramfs": "ramfs lives in memory",
    "devtmpfs": "devtmpfs lives in memory",
    "overlay": "overlay filesystems refuse swapon (put the file on a bind-mounted host directory)",
    "aufs": "aufs refuses swapon",
    "nfs": "swap over NFS needs a kernel built for it and can deadlock under memory pressure",
    "nfs4": "swap over NFS needs a kernel built for it and can deadlock under memory pressure",
    "cifs": "network filesystems cannot hold swap safely",
    "smb3": "network filesystems cannot hold swap safely",
    "ceph": "network filesystems cannot hold swap safely",
    "glusterfs": "network filesystems cannot hold swap safely",
    "9p": "9p filesystems refuse swapon",
    "virtiofs": "virtiofs refuses swapon",
    "squashfs": "squashfs is read-only",
    "iso9660": "iso9660 is read-only",
    "zfs": "ZFS cannot hold a swapfile (swapon refuses it, and swap on a zvol can deadlock under memory pressure); "
           "put the swapfile on another filesystem or use a partition",
}

SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])(iB|B)?|(B))?\s*$", re.IGNORECASE)
SIZE_POWERS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}

CAP_SYS_ADMIN = 21

# Below the host's root: the lock every changing run holds, whose content is the
# journal of the standby and build files this module made and has not removed yet.
JOURNAL = "var/lib/sentry-selfhosted-memory/swapfile.lock"


class SwapfileError(Exception):
    """A refusal or a failure; ``details`` go into the module's result."""

    def __init__(self, msg, **details):
        super(SwapfileError, self).__init__(msg)
        self.msg = msg
        self.details = details


# --- sizes -----------------------------------------------------------------

def parse_size(value):
    """Bytes from an integer or a string such as ``512M``, ``8G``, ``8GiB``, ``1.5G``.

    As util-linux reads sizes: K, M, G, T, P and KiB, MiB, ... are powers of
    1024; KB, MB, GB, ... are powers of 1000; a bare number is bytes.
    """
    if isinstance(value, bool):
        raise SwapfileError("size must be a number of bytes or a string such as 512M or 8G, got %r" % value)
    if isinstance(value, int):
        number, factor = value, 1
    else:
        match = SIZE_RE.match(str(value))
        if not match:
            raise SwapfileError("size %r is not a size: give bytes (an integer) or a number with a unit "
                                "such as 512M, 8G, 8GiB or 8GB" % (value,))
        number_text, prefix, suffix = match.group(1), match.group(2), match.group(3)
        if prefix:
            base = 1000 if suffix and suffix.upper() == "B" else 1024
            factor = base ** SIZE_POWERS[prefix.upper()]
        else:
            factor = 1
        if "." in number_text:
            whole, frac = number_text.split(".")
            number = int(whole) * factor + int(frac) * factor // (10 ** len(frac))
            if int(frac) * factor % (10 ** len(frac)):
                raise SwapfileError("size %r is not a whole number of bytes" % (value,))
            factor = 1
        else:
            number = int(number_text)
    size = number * factor
    if size <= 0:
        raise SwapfileError("size must be positive, got %r" % (value,))
    return size


def check_size(size, page_size, original=None):
    """Refuse a size that mkswap would refuse or that is not whole pages."""
    shown = original if original is not None else size
    if size % page_size:
        down = size // page_size * page_size
        up = down + page_size
        raise SwapfileError(
            "size %s (%d bytes) is not a multiple of the page size (%d bytes): it would round to %d bytes "
            "(down) or %d bytes (up); give one of these" % (shown, size, page_size, down, up),
            rounded_down=down, rounded_up=up)
    minimum = MKSWAP_MIN_PAGES * page_size
    if size < minimum:
        raise SwapfileError("size %s (%d bytes) is below what mkswap accepts: at least %d pages of %d bytes (%d bytes)"
                            % (shown, size, MKSWAP_MIN_PAGES, page_size, minimum))
    return size


def wanted_size(size_option, ram_total):
    """The swapfile's size for the swap role's swap_file_size: "auto" (or none given) is the collection's one sizing
    rule for ``ram_total`` bytes of RAM, anything else a size as util-linux reads it. The swapfile module and the
    audit's advice both read it here."""
    if size_option is None or str(size_option).strip().lower() == "auto":
        return hm.recommended_swap_bytes(ram_total)
    return parse_size(size_option)


human = hm.human_bytes


# --- the safety arithmetic -------------------------------------------------

def swapoff_safety(meminfo, to_move, threshold):
    """Whether RAM can take back ``to_move`` bytes of swap and stay below Relay's threshold.

    swapoff reads every used page of the area back into RAM before it returns;
    the kernel does not push them out to the swap that stays active until RAM
    is nearly full, far past Relay's threshold. So the test is that the RAM
    Relay counts as used (MemTotal - MemAvailable) plus the swap to move stays
    below ``threshold`` of MemTotal; the other swap areas do not count.
    """
    ram = hm.host_memory_from_meminfo(meminfo)
    limit = int(ram["total"] * threshold)
    after = ram["used"] + to_move
    return {
        "ok": to_move == 0 or after < limit,
        "ram_total": ram["total"],
        "ram_available": ram["available"],
        "ram_used": ram["used"],
        "swap_to_move": to_move,
        "ram_used_after": after,
        "threshold": threshold,
        "threshold_bytes": limit,
        "headroom": limit - ram["used"],
    }


def safety_message(what, check):
    return ("refusing to swap off %s: it holds %s of swapped-out memory; RAM in use would go from %s to %s of %s "
            "(%.1f%%), at or above Relay's threshold of %.0f%% (%s), where Relay answers every event with 503. "
            "Free memory, or wait until less swap is in use; nothing was changed"
            % (what, human(check["swap_to_move"]), human(check["ram_used"]), human(check["ram_used_after"]),
               human(check["ram_total"]), 100.0 * check["ram_used_after"] / check["ram_total"],
               100 * check["threshold"], human(check["threshold_bytes"])))


# --- fstab -----------------------------------------------------------------

def fstab_escape(path):
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def fstab_line(path, priority=None):
    options = "sw" if priority is None else "sw,pri=%d" % priority
    return "%s none swap %s 0 0" % (fstab_escape(path), options)


def _is_swap_line_for(line, path):
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return False
    fields = stripped.split()
    return len(fields) >= 3 and fields[2] == "swap" and hm.unescape_octal(fields[0]) == path


def fstab_find(text, path):
    """The swap lines of ``text`` that name ``path``, as they are written."""
    return [line for line in text.splitlines() if _is_swap_line_for(line, path)]


def fstab_edit(text, path, wanted):
    """``text`` with exactly one swap line for ``path`` equal to ``wanted`` (none when ``wanted`` is None).

    The first existing line for the path is replaced in place, later
    duplicates dropped; every other line (comments, other swap areas, blank
    lines) is kept byte for byte.
    """
    out = []
    placed = wanted is None
    for line in text.splitlines(True):
        if _is_swap_line_for(line, path):
            if not placed:
                out.append(wanted + "\n")
                placed = True
            continue
        out.append(line)
    if not placed:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(wanted + "\n")
    return "".join(out)


# --- the swap header and the host -----------------------------------------

def read_swap_header(path, page_size):
    """{"magic", "size"} of a swap signature at ``path``, or None when there is none."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(page_size)
    except (IOError, OSError):
        return None
    if len(data) < page_size:
        return None
    magic = data[page_size - 10:page_size]
    if magic not in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return None
    # struct swap_header: 1024 bytes of boot block, then version and last_page (host byte order).
    last_page = struct.unpack_from("=I", data, 1028)[0]
    return {"magic": magic.decode("ascii"), "size": (last_page + 1) * page_size}


def mount_of(directory, mounts):
    """The mount entry (from hm.read_mounts) whose target holds ``directory``."""
    best = None
    for mount in mounts:
        target = mount["target"].rstrip("/") or "/"
        if directory == target or directory.startswith(target.rstrip("/") + "/") or target == "/":
            if best is None or len(target) >= len(best["target"].rstrip("/") or "/"):
                best = mount
    return best


def container_reason(root="/"):
    """Why this looks like a container (a string), or None on a plain host or VM."""
    for marker in ("run/.containerenv", ".dockerenv", "run/systemd/container"):
        if os.path.exists(os.path.join(root, marker)):
            return "%s exists" % ("/" + marker)
    try:
        with open(os.path.join(root, "proc/1/environ"), "rb") as handle:
            if b"container=" in handle.read():
                return "process 1 has a container= variable"
    except (IOError, OSError):
        pass
    return None


def has_cap_sys_admin(root="/"):
    try:
        with open(os.path.join(root, "proc/self/status")) as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (IOError, OSError, ValueError):
        pass
    return False


def parse_btrfs_version(text):
    match = re.search(r"v(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def choose_method(requested, fstype, btrfs_version=None):
    """How to write the file: fallocate, dd, btrfs-mkswapfile, btrfs-nocow-fallocate or btrfs-nocow-dd."""
    if fstype == "btrfs":
        if requested == "auto" and btrfs_version is not None and btrfs_version >= (6, 1):
            return "btrfs-mkswapfile"
        return "btrfs-nocow-dd" if requested == "dd" else "btrfs-nocow-fallocate"
    if requested != "auto":
        return requested
    return "fallocate" if fstype in FALLOCATE_FILESYSTEMS else "dd"


def btrfs_snapshots(subvolume_show_output):
    """Snapshot names listed by ``btrfs subvolume show``."""
    names, inside = [], False
    for line in (subvolume_show_output or "").splitlines():
        if re.match(r"^\s*Snapshot\(s\):", line):
            inside = True
            rest = line.split(":", 1)[1].strip()
            if rest:
                names.append(rest)
            continue
        if inside:
            if re.match(r"^\s+\S", line) and ":" not in line:
                names.append(line.strip())
            else:
                break
    return names


# --- what is there: reads and refusals that guard further reads -------------

def check_path(path):
    """Refuse a path that cannot be a swapfile before anything else is read."""
    if not os.path.isabs(path):
        raise SwapfileError("path must be absolute, got %s" % path)
    if os.path.isdir(path):
        raise SwapfileError("path %s is a directory" % path)
    if os.path.islink(path):
        raise SwapfileError("path %s is a symbolic link; give the file's real path" % path)
    if not os.path.isdir(os.path.dirname(path)):
        raise SwapfileError("the directory of %s does not exist" % path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise SwapfileError("path %s exists and is not a regular file" % path)


def filesystem(directory, root):
    """The mount holding ``directory``, after refusing filesystems that cannot hold swap."""
    directory = os.path.realpath(directory)
    mount = mount_of(directory, hm.read_mounts(root))
    if mount is None:
        raise SwapfileError("cannot tell which filesystem holds %s (no entry in /proc/self/mounts)" % directory)
    fstype = mount["fstype"]
    if fstype in REFUSED_FILESYSTEMS or fstype.startswith("fuse"):
        reason = REFUSED_FILESYSTEMS.get(fstype, "FUSE filesystems refuse swapon")
        raise SwapfileError("%s is on %s (%s), which cannot hold a swapfile: %s" % (directory, mount["target"], fstype, reason))
    return mount


def host_blocker(root, allow_in_container):
    """Why swap cannot act on this host, with the module's way out, or (None, None)."""
    reason = container_reason(root)
    if reason and not allow_in_container:
        return ("this looks like a container (%s): swap areas are host-wide, so swapon here would change the "
                "host's swap" % reason,
                "Set allow_in_container=true only when that is meant (tests in a privileged container with a "
                "bind-mounted host directory)")
    if not has_cap_sys_admin(root):
        return ("swapon is not permitted here: this process lacks CAP_SYS_ADMIN (an unprivileged container?)",
                "Run on the host or in a privileged container")
    return None, None


def real_path(path):
    """``path`` with its directory resolved, as /proc/swaps names a file."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def area_of(path, areas):
    """The active swap area of ``path`` among ``areas`` (path -> area), or None."""
    return areas.get(real_path(path)) or areas.get(path)


def read_areas(root):
    return dict((area["path"], area) for area in hm.read_swaps(root))


def file_state(path, areas, page_size):
    """What ``path`` is: its size, allocation, owner, swap signature and swap area."""
    if not os.path.lexists(path):
        return {"exists": False, "active": False, "used": 0, "size": 0, "allocated": 0, "header": None,
                "priority": None, "mode": None, "uid": None, "gid": None, "area": None}
    stat = os.stat(path)
    area = area_of(path, areas)
    return {
        "exists": True,
        "size": stat.st_size,
        "allocated": stat.st_blocks * 512,
        "mode": stat.st_mode & 0o7777,
        "uid": stat.st_uid,
        "gid": stat.st_gid,
        "header": read_swap_header(path, page_size),
        "active": area is not None,
        "used": area["used"] if area else 0,
        "priority": area["priority"] if area else None,
        "area": area["path"] if area else None,
    }


# The kernel settings the module keeps, by option: written to sysctl_file in this order.
SETTINGS = (("swappiness", "vm.swappiness"), ("vfs_cache_pressure", "vm.vfs_cache_pressure"))
SETTINGS_HEADER = "# Managed by Ansible (role sentry_selfhosted.memory.swap): local changes are overwritten.\n"


def wanted_settings(params, state):
    """[(name, value)] of the kernel settings given, in the file's order; none with state=absent."""
    if state != "present":
        return []
    return [(name, params[option]) for option, name in SETTINGS if params.get(option) is not None]


def settings_text(wanted):
    return SETTINGS_HEADER + "".join("%s=%d\n" % item for item in wanted) if wanted else None


def read_settings(params, state, root):
    """The settings file (its text, None without one; whether it is root's and 0644) and the running values."""
    path, text, right = params.get("sysctl_file"), None, False
    if path and os.path.lexists(path):
        if not os.path.isfile(path):
            raise SwapfileError("sysctl_file %s exists and is not a regular file" % path)
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "surrogateescape")
        stat = os.stat(path)
        right = stat.st_mode & 0o7777 == 0o644 and stat.st_uid == 0 and stat.st_gid == 0
    running = dict((name, hm.read_sysctl(name, root)) for name, dummy in wanted_settings(params, state))
    return {"file": text, "file_right": right, "running": running}


def resolve_threshold(params):
    """Relay's threshold: the option, else the checkout's relay/config.yml, else Relay's default."""
    if params.get("relay_threshold") is not None:
        return params["relay_threshold"]
    threshold, source = ck.relay_config_threshold(params.get("project_dir") or ck.DEFAULT_PROJECT_DIR)
    if not 0 < threshold <= 1:
        raise SwapfileError("Relay's threshold %s (from %s) is outside (0, 1]; set relay_threshold" % (threshold, source))
    return threshold


# --- the lock and the journal of our own temporary files ------------------

class Journal:
    """The host-wide lock every changing run holds; its content lists the standby and build files this module made."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def lock(self, wait):
        """Take the lock (a root-owned file), waiting up to ``wait`` seconds."""
        import fcntl
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        stat = os.fstat(fd)
        if stat.st_uid != os.geteuid() or stat.st_mode & 0o022:
            os.close(fd)
            raise SwapfileError("the lock file %s is not owned by this user or is writable by others; "
                                "refusing to trust it (remove it)" % self.path)
        deadline = time.time() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError):
                if time.time() >= deadline:
                    os.close(fd)
                    raise SwapfileError("another swapfile run holds %s; waited %d s, nothing was changed"
                                        % (self.path, wait))
                time.sleep(1)
        self.fd = fd

    def unlock(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def files(self):
        """The standby and build files the journal says this module made."""
        try:
            with open(self.path) as handle:
                text = handle.read()
        except (IOError, OSError):
            return set()
        try:
            return set(json.loads(text).get("files", [])) if text.strip() else set()
        except (ValueError, AttributeError):
            return set()

    def record(self, path, made):
        """Add (``made``) or drop ``path``, before the file appears or after it went."""
        files = self.files()
        if made:
            files.add(path)
        else:
            files.discard(path)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"files": sorted(files)}).encode("utf-8"))
        os.fsync(self.fd)


# --- the plan: what is there and what is wanted give the steps; it reads nothing

class Plan:
    """What a run does, in order: the swapfile's steps, then the kernel settings' steps.

    ``changes`` are the swapfile's steps in the operator's words, ``before`` and
    ``after`` its state (the diff), ``settings`` the kernel settings' part
    (plan_settings), ``blocked`` why this host refuses the swapfile's steps.
    """

    def __init__(self, swap_steps, changes, before, after, method=None):
        self.swap_steps = swap_steps
        self.changes = changes
        self.before = before
        self.after = after
        self.method = method
        self.settings = None
        self.blocked = self.way_out = None

    @property
    def steps(self):
        return self.swap_steps + self.settings["steps"]


def refuse_foreign_leftovers(params, seen):
    """Refuse to remove a standby or build file this module cannot prove it made (unless force)."""
    foreign = [path for path, exists in ((seen["standby_path"], seen["standby"]["exists"]),
                                         (seen["build_path"], seen["build_exists"]))
               if exists and path not in seen["own_files"]]
    if foreign and not params["force"]:
        them = "it" if len(foreign) == 1 else "them"
        raise SwapfileError(
            "%s %s not made by this module (its journal %s does not list %s); refusing to switch off or remove "
            "%s. Move %s away, or set force=true to remove %s"
            % (" and ".join(foreign), "is" if len(foreign) == 1 else "are", seen["journal_path"], them, them, them, them))


def refuse_not_swap(params, canonical, refusal):
    if canonical["exists"] and canonical["header"] is None and not canonical["active"] and not params["force"]:
        raise SwapfileError("%s exists and is not a swapfile (no swap signature); refusing to %s" % (params["path"], refusal))


def refuse_unsafe_swapoff(meminfo, what, to_move, threshold):
    check = swapoff_safety(meminfo, to_move, threshold)
    if not check["ok"]:
        raise SwapfileError(safety_message(what, check), safety=check)


def swapfile_work(params, canonical):
    """What the canonical file needs: rebuilt, cycled through the standby, given root's 0600, activated."""
    size, priority, header = params["size"], params.get("priority"), canonical["header"]
    rebuild = not canonical["exists"] or header is None or canonical["size"] != size or header["size"] != size
    reprioritize = canonical["active"] and priority is not None and canonical["priority"] != priority
    owned = (canonical["mode"], canonical["uid"], canonical["gid"]) == (0o600, 0, 0)
    return {
        "rebuild": rebuild,
        "cycle": canonical["active"] and (rebuild or reprioritize),
        "fix_owner": canonical["exists"] and not rebuild and not owned,
        "activate": rebuild or reprioritize or not canonical["active"],
    }


def disk_needed(size, canonical, standby, work):
    """(bytes allocated at the run's peak beyond what is allocated now, what for)."""
    now = canonical["allocated"] + standby["allocated"]
    if work["cycle"]:
        standby_size = standby["allocated"] if standby["active"] else size
        new_size = size if work["rebuild"] else 0
        peak = max(canonical["allocated"] + standby_size, standby_size + new_size)
        return peak - now, "a %s standby file beside the active one" % human(size)
    if work["rebuild"]:
        return size - canonical["allocated"], "a %s swapfile" % human(size)
    return 0, None


def refuse_short_disk(params, seen, extra_bytes, what):
    """Refuse when writing ``extra_bytes`` more would leave less than min_free_disk free."""
    free, keep = seen["disk_free"], params["min_free_disk"]
    if extra_bytes > 0 and free - extra_bytes < keep:
        raise SwapfileError(
            "not enough disk space in %s for %s: it needs %s, %s is free, and min_free_disk asks that %s stay free"
            % (os.path.dirname(params["path"]), what, human(extra_bytes), human(free), human(keep)),
            disk_free=free, disk_needed=extra_bytes, min_free_disk=keep)


def fstab_texts(params, seen, wanted):
    """fstab's text before and after ('' for both with fstab=false)."""
    if not params["fstab"]:
        return "", ""
    return seen["fstab"], fstab_edit(seen["fstab"], params["path"], wanted)


def swapfile_state(params, canonical, fstab_text):
    return {"size": canonical["size"] if canonical["exists"] else 0, "active": canonical["active"],
            "priority": canonical["priority"],
            "fstab": fstab_find(fstab_text, params["path"]) if params["fstab"] else None}


def present_steps(seen, work, fstab_before, fstab_after):
    """The order keeps swap available: a left-over standby goes last, once the swapfile is active again."""
    steps = [("remove_build", None)] if seen["build_exists"] else []
    if work["cycle"]:
        if not seen["standby"]["active"]:
            steps.append(("make_standby", None))
        steps.append(("swapoff_canonical", None))
    steps += [(name, None) for name in ("rebuild", "fix_owner", "activate") if work[name]]
    if fstab_after != fstab_before:
        steps.append(("write_fstab", fstab_after))
    if seen["standby"]["exists"] or work["cycle"]:
        steps.append(("drop_standby", None))
    return steps


def present_changes(params, seen, work, fstab_changes):
    canonical, size, priority = seen["canonical"], params["size"], params.get("priority")
    changes = []
    if seen["standby"]["exists"] and not work["cycle"]:
        changes.append("removed the standby file left by an interrupted run")
    if seen["build_exists"]:
        changes.append("removed a half-written file left by an interrupted run")
    if work["cycle"]:
        changes.append("activated a standby file while %s was switched off" % params["path"])
    if work["rebuild"]:
        changes.append("rebuilt (%s -> %s)" % (human(canonical["size"]), human(size)) if canonical["exists"] else "created")
    if work["fix_owner"]:
        changes.append("set mode 0600 and owner root")
    if work["activate"]:
        changes.append("activated" + ("" if priority is None else " with priority %d" % priority))
    if fstab_changes:
        changes.append("fstab line written")
    return changes


def plan_present(params, seen):
    """The steps that bring the swapfile to ``params`` from what ``seen`` found, or a refusal."""
    path, canonical, standby, priority = params["path"], seen["canonical"], seen["standby"], params.get("priority")
    refuse_foreign_leftovers(params, seen)
    refuse_not_swap(params, canonical, "overwrite it (set force=true to replace it)")
    work = swapfile_work(params, canonical)
    refuse_unsafe_swapoff(seen["meminfo"], "%s%s" % (path, " and its standby" if standby["active"] else ""),
                          (canonical["used"] if work["cycle"] else 0) + standby["used"], seen["threshold"])
    refuse_short_disk(params, seen, *disk_needed(params["size"], canonical, standby, work))
    wanted_line = fstab_line(path, priority)
    fstab_before, fstab_after = fstab_texts(params, seen, wanted_line)
    after = {"size": params["size"], "active": True, "priority": canonical["priority"] if priority is None else priority,
             "fstab": [wanted_line] if params["fstab"] else None}
    return Plan(present_steps(seen, work, fstab_before, fstab_after),
                present_changes(params, seen, work, fstab_after != fstab_before),
                swapfile_state(params, canonical, fstab_before), after, seen["method"])


def plan_absent(params, seen):
    """The steps that switch off and remove the swapfile and its fstab line, or a refusal."""
    canonical, standby = seen["canonical"], seen["standby"]
    refuse_foreign_leftovers(params, seen)
    refuse_not_swap(params, canonical, "delete it (set force=true to delete it anyway)")
    refuse_unsafe_swapoff(seen["meminfo"], params["path"], canonical["used"] + standby["used"], seen["threshold"])
    fstab_before, fstab_after = fstab_texts(params, seen, None)
    planned = [(step, change) for wanted, step, change in (
        (standby["exists"], ("drop_standby", None), "removed the standby file left by an interrupted run"),
        (seen["build_exists"], ("remove_build", None), "removed a half-written file left by an interrupted run"),
        (canonical["active"], ("swapoff_canonical", None), "deactivated"),
        (fstab_after != fstab_before, ("write_fstab", fstab_after), "fstab line removed"),
        (canonical["exists"], ("delete", None), "deleted")) if wanted]
    after = {"size": 0, "active": False, "priority": None, "fstab": [] if params["fstab"] else None}
    return Plan([step for step, dummy in planned], [change for dummy, change in planned],
                swapfile_state(params, canonical, fstab_before), after)


def plan_settings(params, seen, state):
    """The kernel settings' steps: the file written (removed with state=absent), the running values that differ set."""
    found, wanted = seen["settings"], wanted_settings(params, state)
    text, kept = settings_text(wanted), bool(params.get("sysctl_file"))
    writes = kept and text is not None and (found["file"] != text or not found["file_right"])
    removes = kept and state == "absent" and found["file"] is not None
    running_after = dict(found["running"])
    if params.get("sysctl_apply", True):
        running_after.update(wanted)
    steps = [("write_settings_file", text)] if writes else [("remove_settings_file", None)] if removes else []
    steps += [("set_sysctl", (name, value)) for name, value in wanted if found["running"][name] != running_after[name]]
    return {
        "steps": steps,
        "file_before": found["file"],
        "file_after": text if writes else None if removes else found["file"],
        "running_before": found["running"],
        "running_after": running_after,
    }


def make_plan(params, seen, state):
    plan = (plan_present if state == "present" else plan_absent)(params, seen)
    if plan.swap_steps:
        plan.blocked, plan.way_out = seen["blocker"]
    plan.settings = plan_settings(params, seen, state)
    return plan


def summary(params, plan):
    """What the plan changes, in one short line per thing: the swapfile, the settings file, each running value."""
    lines = [swapfile_summary(params["path"], plan.before, plan.after, plan.changes)] if plan.swap_steps else []
    settings = plan.settings
    for step, arg in settings["steps"]:
        if step == "set_sysctl":
            lines.append("%s %s -> %s" % (arg[0], settings["running_before"][arg[0]], arg[1]))
        else:
            lines.append("%s %s" % (params["sysctl_file"], "written" if step == "write_settings_file" else "removed"))
    return lines


def swapfile_summary(path, before, after, changes):
    """e.g. "/swapfile: 0 B -> 12.0 GiB, active, fstab line added"; the plan's words where no figure changes."""
    parts = []
    if before["size"] != after["size"]:
        parts.append("%s -> %s" % (human(before["size"]), human(after["size"])))
    if before["active"] != after["active"]:
        parts.append("active" if after["active"] else "inactive")
    elif after["active"] and before["priority"] != after["priority"]:
        parts.append("priority %s -> %s" % (before["priority"], after["priority"]))
    if after["fstab"] is not None and before["fstab"] != after["fstab"]:
        parts.append("fstab line %s" % ("added" if not before["fstab"] else "removed" if not after["fstab"] else "updated"))
    return "%s: %s" % (path, ", ".join(parts or changes))


# --- apply: run the planned steps, nothing else ------------------------------

class Apply:
    """Runs a plan's steps in order (under the lock); ``done`` says what a failure half-way had already done."""

    def __init__(self, swapfile):
        self.sw = swapfile
        self.params = swapfile.params
        self.path = swapfile.path
        self.done = []
        # Said by a step beyond what the plan said (the dd rewrite), and the method that wrote the file.
        self.notes = []
        self.method = None
        self.made_standby = False
        self.plan = None

    def run(self, plan):
        self.plan, self.method = plan, plan.method
        for step, arg in plan.steps:
            getattr(self, "step_" + step)(arg)
        return self

    # -- the steps --
    def step_remove_build(self, dummy):
        self.remove(self.sw.build_path)
        self.done.append("removed %s" % self.sw.build_path)

    def step_make_standby(self, dummy):
        self.remove(self.sw.standby)
        self.build(self.sw.standby)
        self.activate(self.sw.standby)
        self.made_standby = True
        self.done.append("activated the standby file %s" % self.sw.standby)

    def step_swapoff_canonical(self, dummy):
        try:
            self.swapoff(self.path, self.path)
        except SwapfileError:
            if self.made_standby:
                self.roll_back_standby()
            raise
        self.done.append("switched off %s" % self.path)

    def roll_back_standby(self):
        """Back to where the run started: the standby this run made holds at most a few pages."""
        standby = self.sw.standby
        self.sw.run([self.sw.bin_path("swapoff", required=True), standby], timeout=self.params.get("swapoff_timeout"))
        if self.sw.area_of(standby) is None:
            self.remove(standby)
            self.done.append("switched off and removed %s again" % standby)

    def step_rebuild(self, dummy):
        self.remove(self.path)
        self.build(self.path)
        self.done.append("wrote %s (%s)" % (self.path, human(self.params["size"])))

    def step_fix_owner(self, dummy):
        os.chown(self.path, 0, 0)
        os.chmod(self.path, 0o600)
        self.done.append("set mode 0600 and owner root")

    def step_activate(self, dummy):
        self.activate(self.path)
        self.done.append("activated %s" % self.path)

    def step_write_fstab(self, text):
        active = self.plan.after["active"]
        try:
            self.sw.fstab.write(text)
        except (IOError, OSError) as exc:
            fstab = self.params["fstab_path"]
            msg = "cannot write %s: %s" % (fstab, exc)
            if active:
                msg += ("; %s is active now but %s has no line for it, so it will not come back after a reboot: "
                        "fix %s and run again" % (self.path, fstab, fstab))
            raise SwapfileError(msg)
        self.done.append("wrote the fstab line" if active else "removed the fstab line")

    def step_drop_standby(self, dummy):
        standby = self.sw.standby
        self.swapoff(standby, "the standby file %s" % standby)
        self.remove(standby)
        self.done.append("switched off and removed %s" % standby)

    def step_delete(self, dummy):
        self.remove(self.path)

    def step_write_settings_file(self, text):
        path = self.params["sysctl_file"]
        try:
            replace_file(path, text.encode("utf-8"), 0o644, (0, 0))
        except (IOError, OSError) as exc:
            raise SwapfileError("cannot write %s: %s" % (path, exc))
        self.done.append("wrote %s" % path)

    def step_remove_settings_file(self, dummy):
        os.unlink(self.params["sysctl_file"])
        self.done.append("removed %s" % self.params["sysctl_file"])

    def step_set_sysctl(self, item):
        name, value = item
        try:
            with open(os.path.join(self.sw.root, "proc/sys", name.replace(".", "/")), "w") as handle:
                handle.write("%d\n" % value)
        except (IOError, OSError) as exc:
            raise SwapfileError("cannot set %s=%d in the running kernel: %s" % (name, value, exc))
        self.done.append("set %s=%d" % (name, value))

    # -- what the steps do on the host --
    def build(self, target):
        """Write a swapfile at ``target`` (not active, absent or removable): build beside it, then rename."""
        build, journal = self.sw.build_path, self.sw.journal
        if os.path.lexists(build):
            os.unlink(build)
        journal.record(build, True)
        if self.method == "btrfs-mkswapfile":
            self.sw.run_checked([self.sw.bin_path("btrfs"), "filesystem", "mkswapfile", "--size", str(self.params["size"]),
                                 build], "btrfs filesystem mkswapfile")
            os.chown(build, 0, 0)
            os.chmod(build, 0o600)
        else:
            self.write_zeros(build)
        if os.path.exists(os.path.join(self.sw.root, "sys/fs/selinux/enforce")):
            self.sw.run_checked([self.sw.bin_path("chcon", required=True), "-t", "swapfile_t", build], "chcon -t swapfile_t")
        if target == self.sw.standby:
            journal.record(target, True)
        os.rename(build, target)
        journal.record(build, False)

    def write_zeros(self, build):
        """A root-owned 0600 file of size bytes (No_COW first on btrfs), then mkswap."""
        run, bin_path, size = self.sw.run_checked, self.sw.bin_path, self.params["size"]
        fd = os.open(build, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        if self.method.startswith("btrfs-nocow"):
            # No_COW only takes effect on an empty file: set it before any data is written.
            run([bin_path("chattr", required=True), "+C", build], "chattr +C (No_COW)")
        if self.method.endswith("fallocate"):
            run([bin_path("fallocate", required=True), "--length", str(size), build], "fallocate")
        else:
            run([bin_path("dd", required=True), "if=/dev/zero", "of=%s" % build, "bs=1M", "count=%d" % size,
                 "iflag=count_bytes", "conv=notrunc", "status=none"], "dd")
        run([bin_path("mkswap", required=True), build], "mkswap")

    def swapon(self, path):
        argv = [self.sw.bin_path("swapon", required=True)]
        if self.params.get("priority") is not None:
            argv += ["--priority", str(self.params["priority"])]
        return self.sw.run(argv + [path])

    def activate(self, path):
        """swapon; when auto chose fallocate and the kernel refuses those extents, rewrite with dd once."""
        rc, out, err = self.swapon(path)
        if rc != 0 and self.params["create_method"] == "auto" and self.method in ("fallocate", "btrfs-nocow-fallocate"):
            self.method = self.method.replace("fallocate", "dd")
            self.notes.append("swapon refused the preallocated file (%s); rewritten with dd" % (err or out).strip())
            os.unlink(path)
            self.build(path)
            rc, out, err = self.swapon(path)
        if rc != 0:
            raise SwapfileError("swapon %s failed (rc=%d): %s" % (path, rc, (err or out).strip()), rc=rc, stderr=err)

    def swapoff(self, path, what):
        """swapoff after the safety check on the area's use now, bounded by swapoff_timeout (the kernel keeps an
        interrupted area active)."""
        area = self.sw.area_of(path)
        if area is None:
            return
        refuse_unsafe_swapoff(hm.read_meminfo(self.sw.root), what, area["used"], self.sw.threshold)
        timeout = self.params.get("swapoff_timeout")
        rc, out, err = self.sw.run([self.sw.bin_path("swapoff", required=True), path], timeout=timeout)
        if rc == 124:
            raise SwapfileError("swapoff %s did not finish within swapoff_timeout=%ss and was interrupted; the area is %s. "
                                "Raise swapoff_timeout or retry when less swap is in use"
                                % (path, timeout, "still active" if self.sw.area_of(path) else "no longer active"))
        if rc != 0:
            raise SwapfileError("swapoff %s failed (rc=%d): %s" % (path, rc, (err or out).strip()))

    def remove(self, path):
        if os.path.lexists(path):
            os.unlink(path)
        if path in (self.sw.standby, self.sw.build_path):
            self.sw.journal.record(path, False)


def failed_half_way(exc, done, path):
    """A failure after something was done: say what was done and report changed."""
    msg = exc.msg if isinstance(exc, SwapfileError) else "%s: %s" % (path, exc)
    details = dict(exc.details) if isinstance(exc, SwapfileError) else {}
    if done:
        msg = "%s. Already done by this run: %s" % (msg, "; ".join(done))
        details.update(changed=True, done=list(done))
    return SwapfileError(msg, **details)


# --- the manager -----------------------------------------------------------

class Swapfile:
    """Brings one swapfile (and the kernel's swap settings) to the wanted state; see the module's documentation.

    ``present()`` and ``absent()`` survey the host, plan, and (unless in check
    mode, or with nothing to do) take the lock, plan again and apply the plan.
    """

    def __init__(self, params, run, bin_path, root="/", check_mode=False, page_size=None):
        self.params = params
        self.run = run
        self.bin_path = bin_path
        self.root = root
        self.check_mode = check_mode
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.statvfs = os.statvfs
        self.path = params["path"]
        directory, name = os.path.split(self.path)
        self.standby = os.path.join(directory, ".%s.swapstandby" % name)
        self.build_path = os.path.join(directory, ".%s.swapbuild" % name)
        self.journal = Journal(os.path.join(root, JOURNAL))
        self.fstab = ManagedFile(params["fstab_path"])
        self.threshold = None

    def present(self):
        return self.converge("present")

    def absent(self):
        return self.converge("absent")

    def converge(self, state):
        plan, seen = self.plan(state)
        if self.check_mode or not plan.steps:
            return self.result(plan, seen)
        if plan.blocked:
            raise SwapfileError("%s. %s" % (plan.blocked, plan.way_out), blocked=plan.blocked)
        self.journal.lock(self.params.get("swapoff_timeout") or 600)
        applied = Apply(self)
        try:
            # Again under the lock: another run may have changed the host while this one waited.
            plan, seen = self.plan(state)
            applied.run(plan)
        except (SwapfileError, IOError, OSError) as exc:
            raise failed_half_way(exc, applied.done, self.path)
        finally:
            self.journal.unlock()
        return self.result(plan, seen, applied)

    def plan(self, state):
        seen = self.survey(state)
        return make_plan(self.params, seen, state), seen

    # -- what is there --
    def survey(self, state):
        """Everything the plan needs, read once; refuses early where a read would be meaningless or unsafe."""
        check_path(self.path)
        seen = self.survey_filesystem() if state == "present" else {}
        areas = read_areas(self.root)
        self.threshold = resolve_threshold(self.params)
        seen.update({
            "areas": areas,
            "canonical": file_state(self.path, areas, self.page_size),
            "standby": file_state(self.standby, areas, self.page_size),
            "standby_path": self.standby,
            "build_path": self.build_path,
            "build_exists": os.path.lexists(self.build_path),
            "own_files": self.journal.files(),
            "journal_path": self.journal.path,
            "meminfo": hm.read_meminfo(self.root),
            "threshold": self.threshold,
            "fstab": self.read_fstab() if self.params["fstab"] else "",
            "blocker": host_blocker(self.root, self.params.get("allow_in_container")),
            "settings": read_settings(self.params, state, self.root),
        })
        return seen

    def survey_filesystem(self):
        """The filesystem's refusals, how the file would be written, and the space free."""
        directory = os.path.dirname(self.path)
        mount = filesystem(directory, self.root)
        btrfs_version = self.check_btrfs(mount) if mount["fstype"] == "btrfs" else None
        stat = self.statvfs(directory)
        return {"method": choose_method(self.params["create_method"], mount["fstype"], btrfs_version),
                "disk_free": stat.f_bavail * stat.f_frsize}

    def check_btrfs(self, mount):
        """Refuse compression and snapshotted subvolumes; return btrfs-progs' version or None."""
        directory, options = os.path.dirname(self.path), mount.get("options", "")
        if re.search(r"(^|,)compress(-force)?=", options) or re.search(r"(^|,)compress(-force)?(,|$)", options):
            raise SwapfileError("%s is mounted with compression (%s): btrfs cannot hold a swapfile there; "
                                "use an uncompressed subvolume" % (mount["target"], options))
        btrfs = self.bin_path("btrfs")
        if btrfs is None:
            raise SwapfileError("%s is btrfs but the btrfs command (btrfs-progs) is missing: it is needed to check "
                                "for snapshots and compression before placing a swapfile" % directory)
        out = self.run_checked([btrfs, "property", "get", directory, "compression"], "reading btrfs compression")
        if out.strip() and not out.strip().endswith("="):
            raise SwapfileError("%s has btrfs compression set (%s): a swapfile cannot live there" % (directory, out.strip()))
        snapshots = btrfs_snapshots(self.run_checked([btrfs, "subvolume", "show", directory], "btrfs subvolume show"))
        if snapshots:
            raise SwapfileError("the btrfs subvolume holding %s has snapshots (%s): an active swapfile would make "
                                "every later snapshot of it fail; use a dedicated subvolume without snapshots"
                                % (directory, ", ".join(snapshots)))
        return parse_btrfs_version(self.run_checked([btrfs, "--version"], "btrfs --version"))

    def read_fstab(self):
        """fstab's text ('' without one); the same ManagedFile writes it back with its mode, owner and line ends."""
        try:
            return self.fstab.read()
        except (IOError, OSError) as exc:
            raise SwapfileError("cannot read %s: %s" % (self.params["fstab_path"], exc))

    def run_checked(self, argv, what, timeout=None):
        rc, out, err = self.run(argv, timeout=timeout)
        if rc != 0:
            raise SwapfileError("%s failed (%s, rc=%d): %s" % (what, " ".join(argv), rc, (err or out).strip()),
                                rc=rc, stdout=out, stderr=err)
        return out

    def area_of(self, path):
        return area_of(path, read_areas(self.root))

    # -- the result --
    def result(self, plan, seen, applied=None):
        """The module's result: the plan's figures, and after a real run what the host says now."""
        after, meminfo = dict(plan.after), seen["meminfo"]
        swap_before = swap_after = swap_of(seen["areas"].values())
        if applied is not None and plan.steps:
            swap_after, meminfo = swap_of(hm.read_swaps(self.root)), hm.read_meminfo(self.root)
            after["priority"] = (self.area_of(self.path) or {}).get("priority")
        elif self.check_mode and plan.swap_steps:
            swap_after = planned_swap(seen, self.path, after)
        settings = plan.settings
        return {
            "changed": bool(plan.steps),
            "path": self.path,
            "size": after["size"],
            "active": after["active"],
            "priority": after["priority"],
            "fstab_line": (after["fstab"] or [None])[0] if self.params["fstab"] else None,
            "method": applied.method if applied is not None else plan.method,
            "changes": plan.changes + (applied.notes if applied is not None else []),
            "summary": summary(self.params, plan),
            "blocked": plan.blocked,
            "swap_before": swap_before,
            "swap_after": swap_after,
            "sysctl_before": settings["running_before"],
            "sysctl_after": settings["running_after"],
            "relay": self.relay_figure(meminfo),
            "diff": {"before": plan.before, "after": after,
                     "sysctl_file": [settings["file_before"], settings["file_after"]] if settings["steps"] else None},
        }

    def relay_figure(self, meminfo):
        """Relay's figure from the host's figures (the role lists no container), or None without a checkout given."""
        if not self.params.get("project_dir"):
            return None
        return ck.relay_figure(self.params["project_dir"], self.root, threshold=self.threshold, meminfo=meminfo,
                               containers=[])["relay"]


def swap_of(areas):
    areas = sorted(areas, key=lambda area: area["path"])
    return {"total": sum(a["size"] for a in areas), "used": sum(a["used"] for a in areas), "areas": areas}


def planned_swap(seen, path, after):
    """Swap after the plan (check mode): the other areas as they are, the swapfile at its planned size; use unknown."""
    ours = (seen["canonical"]["area"], seen["standby"]["area"])
    areas = [area for area in seen["areas"].values() if area["path"] not in ours]
    if after["active"]:
        areas.append({"path": path, "type": "file", "size": after["size"], "used": None, "priority": after["priority"]})
    return {"total": sum(area["size"] for area in areas), "used": None,
            "areas": sorted(areas, key=lambda area: area["path"])}
