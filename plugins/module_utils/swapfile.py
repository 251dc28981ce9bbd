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
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFile

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


# --- the manager -----------------------------------------------------------

class Swapfile:
    """Brings one swapfile to the wanted state; see the module's documentation."""

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
        self.directory = directory
        self.standby = os.path.join(directory, ".%s.swapstandby" % name)
        self.build_path = os.path.join(directory, ".%s.swapbuild" % name)
        self.changes = []
        self.method = None
        # Set by check_host: why a real run would be refused here (check mode plans anyway).
        self.blocked = None
        self.journal_path = os.path.join(root, JOURNAL)
        self.lock_handle = None
        # What this run has done so far, for the message of a failure half-way.
        self.done = []

    # -- commands --
    def _cmd(self, argv, what, timeout=None):
        rc, out, err = self.run(argv, timeout=timeout)
        if rc != 0:
            raise SwapfileError("%s failed (%s, rc=%d): %s" % (what, " ".join(argv), rc, (err or out).strip()),
                                rc=rc, stdout=out, stderr=err)
        return out

    def _areas(self):
        return dict((area["path"], area) for area in hm.read_swaps(self.root))

    def _real(self, path):
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))

    def area_of(self, path, areas=None):
        areas = self._areas() if areas is None else areas
        return areas.get(self._real(path)) or areas.get(path)

    # -- checks that touch nothing --
    def host_blocker(self):
        """Why swap cannot act on this host, with the module's way out, or (None, None)."""
        reason = container_reason(self.root)
        if reason and not self.params.get("allow_in_container"):
            return ("this looks like a container (%s): swap areas are host-wide, so swapon here would change the "
                    "host's swap" % reason,
                    "Set allow_in_container=true only when that is meant (tests in a privileged container with a "
                    "bind-mounted host directory)")
        if not has_cap_sys_admin(self.root):
            return ("swapon is not permitted here: this process lacks CAP_SYS_ADMIN (an unprivileged container?)",
                    "Run on the host or in a privileged container")
        return None, None

    def check_host(self):
        """Refuse a host where swap cannot act; check mode still plans, and says why (``blocked``)."""
        self.blocked, way_out = self.host_blocker()
        if self.blocked and not self.check_mode:
            raise SwapfileError("%s. %s" % (self.blocked, way_out), blocked=self.blocked)

    def check_path(self):
        path = self.path
        if not os.path.isabs(path):
            raise SwapfileError("path must be absolute, got %s" % path)
        if os.path.isdir(path):
            raise SwapfileError("path %s is a directory" % path)
        if os.path.islink(path):
            raise SwapfileError("path %s is a symbolic link; give the file's real path" % path)
        if not os.path.isdir(self.directory):
            raise SwapfileError("the directory of %s does not exist" % path)
        if os.path.exists(path) and not os.path.isfile(path):
            raise SwapfileError("path %s exists and is not a regular file" % path)

    def filesystem(self):
        """The mount holding the directory, after refusing filesystems that cannot hold swap."""
        directory = os.path.realpath(self.directory)
        mount = mount_of(directory, hm.read_mounts(self.root))
        if mount is None:
            raise SwapfileError("cannot tell which filesystem holds %s (no entry in /proc/self/mounts)" % directory)
        fstype = mount["fstype"]
        if fstype in REFUSED_FILESYSTEMS or fstype.startswith("fuse"):
            reason = REFUSED_FILESYSTEMS.get(fstype, "FUSE filesystems refuse swapon")
            raise SwapfileError("%s is on %s (%s), which cannot hold a swapfile: %s" % (directory, mount["target"], fstype, reason))
        return mount

    def check_btrfs(self, mount):
        """Refuse compression and snapshotted subvolumes; return btrfs-progs' version or None."""
        options = mount.get("options", "")
        if re.search(r"(^|,)compress(-force)?=", options) or re.search(r"(^|,)compress(-force)?(,|$)", options):
            raise SwapfileError("%s is mounted with compression (%s): btrfs cannot hold a swapfile there; "
                                "use an uncompressed subvolume" % (mount["target"], options))
        btrfs = self.bin_path("btrfs")
        if btrfs is None:
            raise SwapfileError("%s is btrfs but the btrfs command (btrfs-progs) is missing: it is needed to check "
                                "for snapshots and compression before placing a swapfile" % self.directory)
        out = self._cmd([btrfs, "property", "get", self.directory, "compression"], "reading btrfs compression")
        if out.strip() and not out.strip().endswith("="):
            raise SwapfileError("%s has btrfs compression set (%s): a swapfile cannot live there"
                                % (self.directory, out.strip()))
        out = self._cmd([btrfs, "subvolume", "show", self.directory], "btrfs subvolume show")
        snapshots = btrfs_snapshots(out)
        if snapshots:
            raise SwapfileError("the btrfs subvolume holding %s has snapshots (%s): an active swapfile would make "
                                "every later snapshot of it fail; use a dedicated subvolume without snapshots"
                                % (self.directory, ", ".join(snapshots)))
        return parse_btrfs_version(self._cmd([btrfs, "--version"], "btrfs --version"))

    def check_disk(self, extra_bytes, what):
        """Refuse when writing ``extra_bytes`` more would leave less than min_free_disk free."""
        if extra_bytes <= 0:
            return
        stat = self.statvfs(self.directory)
        free = stat.f_bavail * stat.f_frsize
        keep = self.params["min_free_disk"]
        if free - extra_bytes < keep:
            raise SwapfileError(
                "not enough disk space in %s for %s: it needs %s, %s is free, and min_free_disk asks that %s stay free"
                % (self.directory, what, human(extra_bytes), human(free), human(keep)),
                disk_free=free, disk_needed=extra_bytes, min_free_disk=keep)

    def check_swapoff(self, what, to_move):
        check = swapoff_safety(hm.read_meminfo(self.root), to_move, self.params["relay_threshold"])
        if not check["ok"]:
            raise SwapfileError(safety_message(what, check), safety=check)
        return check

    # -- state --
    def file_state(self, path, areas):
        if not os.path.lexists(path):
            return {"exists": False, "active": False, "used": 0, "size": 0, "allocated": 0, "header": None,
                    "priority": None, "mode": None, "uid": None, "gid": None}
        stat = os.stat(path)
        area = self.area_of(path, areas)
        return {
            "exists": True,
            "size": stat.st_size,
            "allocated": stat.st_blocks * 512,
            "mode": stat.st_mode & 0o7777,
            "uid": stat.st_uid,
            "gid": stat.st_gid,
            "header": read_swap_header(path, self.page_size),
            "active": area is not None,
            "used": area["used"] if area else 0,
            "priority": area["priority"] if area else None,
        }

    def read_fstab(self):
        """fstab's text ('' without one); the same ManagedFile writes it back with its mode, owner and line ends."""
        self.fstab = ManagedFile(self.params["fstab_path"])
        try:
            return self.fstab.read()
        except (IOError, OSError) as exc:
            raise SwapfileError("cannot read %s: %s" % (self.params["fstab_path"], exc))

    def write_fstab(self, text):
        try:
            self.fstab.write(text)
        except (IOError, OSError) as exc:
            raise SwapfileError("cannot write %s: %s" % (self.params["fstab_path"], exc))

    # -- actions --
    def build(self, target, size, method):
        """Write a swapfile at ``target`` (not active, absent or removable): build beside it, then rename."""
        build = self.build_path
        if os.path.lexists(build):
            os.unlink(build)
        self.record(build, True)
        if method == "btrfs-mkswapfile":
            self._cmd([self.bin_path("btrfs"), "filesystem", "mkswapfile", "--size", str(size), build],
                      "btrfs filesystem mkswapfile")
            os.chown(build, 0, 0)
            os.chmod(build, 0o600)
        else:
            fd = os.open(build, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.fchown(fd, 0, 0)
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            if method.startswith("btrfs-nocow"):
                # No_COW only takes effect on an empty file: set it before any data is written.
                self._cmd([self.bin_path("chattr", required=True), "+C", build], "chattr +C (No_COW)")
            if method.endswith("fallocate"):
                self._cmd([self.bin_path("fallocate", required=True), "--length", str(size), build], "fallocate")
            else:
                self._cmd([self.bin_path("dd", required=True), "if=/dev/zero", "of=%s" % build, "bs=1M",
                           "count=%d" % size, "iflag=count_bytes", "conv=notrunc", "status=none"], "dd")
            self._cmd([self.bin_path("mkswap", required=True), build], "mkswap")
        if os.path.exists(os.path.join(self.root, "sys/fs/selinux/enforce")):
            self._cmd([self.bin_path("chcon", required=True), "-t", "swapfile_t", build], "chcon -t swapfile_t")
        if target == self.standby:
            self.record(target, True)
        os.rename(build, target)
        self.record(build, False)

    def swapon(self, path):
        argv = [self.bin_path("swapon", required=True)]
        if self.params.get("priority") is not None:
            argv += ["--priority", str(self.params["priority"])]
        return self.run(argv + [path])

    def activate(self, path, size):
        """swapon; when auto chose fallocate and the kernel refuses those extents, rewrite with dd once."""
        rc, out, err = self.swapon(path)
        if rc != 0 and self.params["create_method"] == "auto" and self.method in ("fallocate", "btrfs-nocow-fallocate"):
            self.method = self.method.replace("fallocate", "dd")
            self.changes.append("swapon refused the preallocated file (%s); rewritten with dd" % (err or out).strip())
            os.unlink(path)
            self.build(path, size, self.method)
            rc, out, err = self.swapon(path)
        if rc != 0:
            raise SwapfileError("swapon %s failed (rc=%d): %s" % (path, rc, (err or out).strip()), rc=rc, stderr=err)

    def swapoff(self, path, what):
        """swapoff, bounded by swapoff_timeout; the kernel keeps the area active when it is interrupted."""
        area = self.area_of(path)
        if area is None:
            return
        self.check_swapoff(what, area["used"])
        argv = [self.bin_path("swapoff", required=True), path]
        timeout = self.params.get("swapoff_timeout")
        rc, out, err = self.run(argv, timeout=timeout)
        if rc != 0:
            still = self.area_of(path) is not None
            if rc == 124:
                raise SwapfileError("swapoff %s did not finish within swapoff_timeout=%ss and was interrupted; the area is %s. "
                                    "Raise swapoff_timeout or retry when less swap is in use"
                                    % (path, timeout, "still active" if still else "no longer active"))
            raise SwapfileError("swapoff %s failed (rc=%d): %s" % (path, rc, (err or out).strip()))

    def remove(self, path):
        if os.path.lexists(path):
            os.unlink(path)
        if path in (self.standby, self.build_path):
            self.record(path, False)

    # -- the lock and the journal of our own temporary files --
    def lock(self, wait):
        """Take the host-wide swapfile lock (a root-owned file), waiting up to ``wait`` seconds."""
        import fcntl
        directory = os.path.dirname(self.journal_path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        stat = os.fstat(fd)
        if stat.st_uid != os.geteuid() or stat.st_mode & 0o022:
            os.close(fd)
            raise SwapfileError("the lock file %s is not owned by this user or is writable by others; "
                                "refusing to trust it (remove it)" % self.journal_path)
        deadline = time.time() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError):
                if time.time() >= deadline:
                    os.close(fd)
                    raise SwapfileError("another swapfile run holds %s; waited %d s, nothing was changed"
                                        % (self.journal_path, wait))
                time.sleep(1)
        self.lock_handle = fd

    def unlock(self):
        if self.lock_handle is not None:
            os.close(self.lock_handle)
            self.lock_handle = None

    def own_files(self):
        """The standby and build files the journal says this module made."""
        try:
            with open(self.journal_path) as handle:
                text = handle.read()
        except (IOError, OSError):
            return set()
        try:
            return set(json.loads(text).get("files", [])) if text.strip() else set()
        except (ValueError, AttributeError):
            return set()

    def record(self, path, made):
        """Add (``made``) or drop ``path`` in the journal, before the file appears or after it went."""
        files = self.own_files()
        if made:
            files.add(path)
        else:
            files.discard(path)
        os.lseek(self.lock_handle, 0, os.SEEK_SET)
        os.ftruncate(self.lock_handle, 0)
        os.write(self.lock_handle, json.dumps({"files": sorted(files)}).encode("utf-8"))
        os.fsync(self.lock_handle)

    def check_leftovers(self, standby_exists, build_exists):
        """Refuse to remove a standby or build file this module cannot prove it made (unless force)."""
        ours = self.own_files()
        foreign = [path for path, exists in ((self.standby, standby_exists), (self.build_path, build_exists))
                   if exists and path not in ours]
        if foreign and not self.params["force"]:
            raise SwapfileError(
                "%s %s not made by this module (its journal %s does not list %s); refusing to switch off or remove "
                "%s. Move %s away, or set force=true to remove %s"
                % (" and ".join(foreign), "is" if len(foreign) == 1 else "are", self.journal_path,
                   "it" if len(foreign) == 1 else "them", "it" if len(foreign) == 1 else "them",
                   "it" if len(foreign) == 1 else "them", "it" if len(foreign) == 1 else "them"))

    def failed_half_way(self, exc):
        """A failure after something was done: say what was done and report changed."""
        msg = exc.msg if isinstance(exc, SwapfileError) else "%s: %s" % (self.path, exc)
        details = dict(exc.details) if isinstance(exc, SwapfileError) else {}
        if self.done:
            msg = "%s. Already done by this run: %s" % (msg, "; ".join(self.done))
            details.update(changed=True, done=list(self.done))
        return SwapfileError(msg, **details)

    def present(self):
        return self._locked(self._present)

    def absent(self):
        return self._locked(self._absent)

    def _locked(self, work):
        if self.check_mode:
            return work()
        # Plan first, touching nothing: a run with nothing to do, or refused on this host,
        # leaves no lock file behind. The plan is made again under the lock.
        self.check_mode = True
        try:
            plan = work()
        finally:
            self.check_mode = False
        if not plan["changed"]:
            return plan
        self.check_host()
        self.lock(self.params.get("swapoff_timeout") or 600)
        try:
            return work()
        except (SwapfileError, IOError, OSError) as exc:
            raise self.failed_half_way(exc)
        finally:
            self.unlock()

    # -- states --
    def _present(self):
        size = self.params["size"]
        method_requested = self.params["create_method"]
        self.check_path()
        mount = self.filesystem()
        btrfs_version = self.check_btrfs(mount) if mount["fstype"] == "btrfs" else None
        self.method = choose_method(method_requested, mount["fstype"], btrfs_version)

        areas = self._areas()
        canonical = self.file_state(self.path, areas)
        standby = self.file_state(self.standby, areas)
        leftover_build = os.path.lexists(self.build_path)
        self.check_leftovers(standby["exists"], leftover_build)
        wanted_priority = self.params.get("priority")

        if canonical["exists"] and canonical["header"] is None and not canonical["active"] and not self.params["force"]:
            raise SwapfileError("%s exists and is not a swapfile (no swap signature); refusing to overwrite it "
                                "(set force=true to replace it)" % self.path)
        rebuild = (not canonical["exists"] or canonical["header"] is None or canonical["size"] != size
                   or canonical["header"]["size"] != size)
        reprioritize = canonical["active"] and wanted_priority is not None and canonical["priority"] != wanted_priority
        cycle = canonical["active"] and (rebuild or reprioritize)
        fix_owner = canonical["exists"] and not rebuild and (canonical["mode"] != 0o600 or canonical["uid"] != 0 or canonical["gid"] != 0)
        activate = rebuild or reprioritize or not canonical["active"]

        # Safety first, before anything is written.
        to_move = 0
        if cycle:
            to_move += canonical["used"]
        if standby["active"]:
            to_move += standby["used"]
        if to_move or cycle or standby["active"]:
            self.check_swapoff("%s%s" % (self.path, " and its standby" if standby["active"] else ""), to_move)

        # Disk: the most that is allocated at once, less what is allocated now.
        now = canonical["allocated"] + standby["allocated"]
        if cycle:
            standby_size = standby["allocated"] if standby["active"] else size
            new_size = size if rebuild else 0
            peak = max(canonical["allocated"] + standby_size, standby_size + new_size)
            self.check_disk(peak - now, "a %s standby file beside the active one" % human(size))
        elif rebuild:
            self.check_disk(size - canonical["allocated"], "a %s swapfile" % human(size))

        wanted_line = fstab_line(self.path, wanted_priority)
        fstab_before = self.read_fstab() if self.params["fstab"] else ""
        fstab_after = fstab_edit(fstab_before, self.path, wanted_line) if self.params["fstab"] else ""

        planned = []
        if standby["exists"] and not cycle:
            planned.append("removed the standby file left by an interrupted run")
        if leftover_build:
            planned.append("removed a half-written file left by an interrupted run")
        if cycle:
            planned.append("activated a standby file while %s was switched off" % self.path)
        if rebuild:
            planned.append("created" if not canonical["exists"] else "rebuilt (%s -> %s)" % (human(canonical["size"]), human(size)))
        if fix_owner:
            planned.append("set mode 0600 and owner root")
        if activate:
            planned.append("activated" + ("" if wanted_priority is None else " with priority %d" % wanted_priority))
        if fstab_after != fstab_before:
            planned.append("fstab line written")

        before = {"size": canonical["size"] if canonical["exists"] else 0, "active": canonical["active"],
                  "priority": canonical["priority"], "fstab": fstab_find(fstab_before, self.path) if self.params["fstab"] else None}
        after = {"size": size, "active": True, "priority": wanted_priority if wanted_priority is not None else canonical["priority"],
                 "fstab": [wanted_line] if self.params["fstab"] else None}

        if planned:
            self.check_host()
        if self.check_mode or not planned:
            self.changes = planned
            return self.result(before, after, planned)

        self.changes = planned
        if leftover_build:
            self.remove(self.build_path)
            self.done.append("removed %s" % self.build_path)
        made_standby = False
        if cycle:
            if not standby["active"]:
                self.remove(self.standby)
                self.build(self.standby, size, self.method)
                self.activate(self.standby, size)
                made_standby = True
                self.done.append("activated the standby file %s" % self.standby)
            try:
                self.swapoff(self.path, self.path)
            except SwapfileError:
                if made_standby:
                    # Back to where we started: the standby holds at most a few pages.
                    self.run([self.bin_path("swapoff", required=True), self.standby], timeout=self.params.get("swapoff_timeout"))
                    if self.area_of(self.standby) is None:
                        self.remove(self.standby)
                        self.done.append("switched off and removed %s again" % self.standby)
                raise
            self.done.append("switched off %s" % self.path)
        if rebuild:
            self.remove(self.path)
            self.build(self.path, size, self.method)
            self.done.append("wrote %s (%s)" % (self.path, human(size)))
        if fix_owner:
            os.chown(self.path, 0, 0)
            os.chmod(self.path, 0o600)
            self.done.append("set mode 0600 and owner root")
        if activate:
            self.activate(self.path, size)
            self.done.append("activated %s" % self.path)
        if fstab_after != fstab_before:
            try:
                self.write_fstab(fstab_after)
            except SwapfileError as exc:
                raise SwapfileError("%s; %s is active now but %s has no line for it, so it will not come back "
                                    "after a reboot: fix %s and run again" % (exc.msg, self.path, self.params["fstab_path"],
                                                                              self.params["fstab_path"]))
            self.done.append("wrote the fstab line")
        if os.path.lexists(self.standby):
            self.swapoff(self.standby, "the standby file %s" % self.standby)
            self.remove(self.standby)
            self.done.append("switched off and removed %s" % self.standby)
        after["priority"] = (self.area_of(self.path) or {}).get("priority")
        return self.result(before, after, planned)

    def _absent(self):
        self.check_path()
        areas = self._areas()
        canonical = self.file_state(self.path, areas)
        standby = self.file_state(self.standby, areas)
        leftover_build = os.path.lexists(self.build_path)
        self.check_leftovers(standby["exists"], leftover_build)
        if canonical["exists"] and canonical["header"] is None and not canonical["active"] and not self.params["force"]:
            raise SwapfileError("%s exists and is not a swapfile (no swap signature); refusing to delete it "
                                "(set force=true to delete it anyway)" % self.path)
        if canonical["active"] or standby["active"]:
            self.check_swapoff(self.path, canonical["used"] + standby["used"])
        fstab_before = self.read_fstab() if self.params["fstab"] else ""
        fstab_after = fstab_edit(fstab_before, self.path, None) if self.params["fstab"] else ""

        planned = []
        if standby["exists"]:
            planned.append("removed the standby file left by an interrupted run")
        if leftover_build:
            planned.append("removed a half-written file left by an interrupted run")
        if canonical["active"]:
            planned.append("deactivated")
        if fstab_after != fstab_before:
            planned.append("fstab line removed")
        if canonical["exists"]:
            planned.append("deleted")
        before = {"size": canonical["size"] if canonical["exists"] else 0, "active": canonical["active"],
                  "priority": canonical["priority"], "fstab": fstab_find(fstab_before, self.path) if self.params["fstab"] else None}
        after = {"size": 0, "active": False, "priority": None, "fstab": [] if self.params["fstab"] else None}
        if planned:
            self.check_host()
        if self.check_mode or not planned:
            self.changes = planned
            return self.result(before, after, planned)
        if standby["exists"]:
            self.swapoff(self.standby, "the standby file %s" % self.standby)
            self.remove(self.standby)
            self.done.append("switched off and removed %s" % self.standby)
        if leftover_build:
            self.remove(self.build_path)
            self.done.append("removed %s" % self.build_path)
        if canonical["active"]:
            self.swapoff(self.path, self.path)
            self.done.append("switched off %s" % self.path)
        if fstab_after != fstab_before:
            self.write_fstab(fstab_after)
            self.done.append("removed the fstab line")
        self.remove(self.path)
        self.changes = planned
        return self.result(before, after, planned)

    def result(self, before, after, planned):
        return {
            "changed": bool(planned),
            "path": self.path,
            "size": after["size"],
            "active": after["active"],
            "priority": after["priority"],
            "fstab_line": (after["fstab"] or [None])[0] if self.params["fstab"] else None,
            "method": self.method,
            "changes": planned,
            "blocked": self.blocked,
            "diff": {"before": before, "after": after},
        }
