# SPDX-License-Identifier: GPL-3.0-or-later
"""The swapfile logic: sizes, method choice, the safety arithmetic, fstab editing,
and the order of operations on a simulated kernel.

The kernel side (swapon, swapoff, mkswap, fallocate and the EPERM an active
swapfile gives on rename/unlink) is a test double here, because these tests
must not change the swap of the machine that runs them; molecule/swap runs the
real commands.
"""

import errno
import json
import os
import struct

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import managed_file
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "swap")
PAGE = 4096
MIB = 1024 ** 2
GIB = 1024 ** 3


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


# --- sizes -----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (1048576, 1048576),
    ("1048576", 1048576),
    ("512M", 512 * MIB),
    ("512m", 512 * MIB),
    ("8G", 8 * GIB),
    ("8GiB", 8 * GIB),
    ("8 GiB", 8 * GIB),
    ("8GB", 8 * 1000 ** 3),
    ("1.5G", 3 * GIB // 2),
    ("64K", 65536),
    ("100B", 100),
    ("1T", 1024 ** 4),
])
def test_parse_size(value, expected):
    assert sw.parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "8X", "G", "-1G", "0", 0, True, "1.5", "8 G B", "1.0000000001K"])
def test_parse_size_refuses(value):
    with pytest.raises(sw.SwapfileError):
        sw.parse_size(value)


def test_check_size_says_what_it_rounds_to():
    with pytest.raises(sw.SwapfileError) as exc:
        sw.check_size(1000000, PAGE, "1000000")
    assert "999424" in exc.value.msg and "1003520" in exc.value.msg
    assert exc.value.details == {"rounded_down": 999424, "rounded_up": 1003520}


def test_check_size_minimum_is_what_mkswap_accepts():
    assert sw.check_size(10 * PAGE, PAGE) == 10 * PAGE
    with pytest.raises(sw.SwapfileError, match="below what mkswap accepts"):
        sw.check_size(9 * PAGE, PAGE)


def test_check_size_follows_the_page_size():
    assert sw.check_size(10 * 65536, 65536) == 10 * 65536
    with pytest.raises(sw.SwapfileError, match="page size"):
        sw.check_size(4096 * 17, 65536)


# --- method choice ---------------------------------------------------------

@pytest.mark.parametrize("requested, fstype, btrfs, expected", [
    ("auto", "ext4", None, "fallocate"),
    ("auto", "xfs", None, "fallocate"),
    ("auto", "ext3", None, "dd"),
    ("auto", "f2fs", None, "dd"),
    ("dd", "ext4", None, "dd"),
    ("fallocate", "f2fs", None, "fallocate"),
    ("auto", "btrfs", (6, 2), "btrfs-mkswapfile"),
    ("auto", "btrfs", (6, 1), "btrfs-mkswapfile"),
    ("auto", "btrfs", (6, 0), "btrfs-nocow-fallocate"),
    ("auto", "btrfs", (5, 16), "btrfs-nocow-fallocate"),
    ("auto", "btrfs", None, "btrfs-nocow-fallocate"),
    ("fallocate", "btrfs", (6, 6), "btrfs-nocow-fallocate"),
    ("dd", "btrfs", (6, 6), "btrfs-nocow-dd"),
])
def test_choose_method(requested, fstype, btrfs, expected):
    assert sw.choose_method(requested, fstype, btrfs) == expected


def test_parse_btrfs_version():
    assert sw.parse_btrfs_version("btrfs-progs v6.2 \n-EXPERIMENTAL -INJECT") == (6, 2)
    assert sw.parse_btrfs_version("btrfs-progs v5.16.2") == (5, 16)
    assert sw.parse_btrfs_version("nonsense") is None


def test_btrfs_snapshots():
    assert sw.btrfs_snapshots(fixture("btrfs-subvolume-show-snapshotted")) == [
        "@snapshots/1/snapshot", "@snapshots/2/snapshot"]
    assert sw.btrfs_snapshots(fixture("btrfs-subvolume-show-plain")) == []


# --- the safety arithmetic -------------------------------------------------

MEMINFO = {"MemTotal": 16 * GIB, "MemFree": 1 * GIB, "MemAvailable": 4 * GIB}


def test_safety_below_threshold():
    # used 12 GiB; threshold 95% of 16 GiB = 15.2 GiB; 3 GiB of swap brings it to 15 GiB.
    check = sw.swapoff_safety(MEMINFO, 3 * GIB, 0.95)
    assert check["ok"]
    assert check["ram_used"] == 12 * GIB
    assert check["ram_used_after"] == 15 * GIB
    assert check["threshold_bytes"] == int(16 * GIB * 0.95)
    assert check["headroom"] == int(16 * GIB * 0.95) - 12 * GIB


def test_safety_refuses_inside_memavailable_but_above_relays_threshold():
    # 3.5 GiB fits in MemAvailable (4 GiB) but lands at 97% of RAM: Relay would answer 503.
    check = sw.swapoff_safety(MEMINFO, 3.5 * GIB, 0.95)
    assert not check["ok"]
    message = sw.safety_message("/swapfile", check)
    assert "95%" in message and "3.5 GiB" in message and "nothing was changed" in message


def test_safety_lower_threshold_is_stricter():
    assert sw.swapoff_safety(MEMINFO, 3 * GIB, 0.95)["ok"]
    assert not sw.swapoff_safety(MEMINFO, 3 * GIB, 0.9)["ok"]


def test_safety_nothing_to_move_is_always_safe():
    full = {"MemTotal": 16 * GIB, "MemFree": 0, "MemAvailable": 0}
    assert sw.swapoff_safety(full, 0, 0.95)["ok"]
    assert not sw.swapoff_safety(full, PAGE, 0.95)["ok"]


# --- fstab -----------------------------------------------------------------

def test_fstab_line():
    assert sw.fstab_line("/swapfile") == "/swapfile none swap sw 0 0"
    assert sw.fstab_line("/swapfile", 10) == "/swapfile none swap sw,pri=10 0 0"
    assert sw.fstab_line("/srv/my swap") == "/srv/my\\040swap none swap sw 0 0"


def test_fstab_edit_replaces_first_and_drops_duplicates_keeping_everything_else():
    text = fixture("fstab-duplicates")
    edited = sw.fstab_edit(text, "/swapfile", "/swapfile none swap sw,pri=10 0 0")
    assert edited.splitlines() == [
        "# /etc/fstab: static file system information.",
        "UUID=0a1b / ext4 errors=remount-ro 0 1",
        "/dev/vda2 none swap sw 0 0",
        "",
        "# old swap",
        "/swapfile none swap sw,pri=10 0 0",
        "/srv/other.swap none swap sw,pri=5 0 0",
    ]
    assert sw.fstab_edit(edited, "/swapfile", "/swapfile none swap sw,pri=10 0 0") == edited


def test_fstab_edit_appends_and_mends_a_missing_newline():
    assert sw.fstab_edit("UUID=1 / ext4 defaults 0 1", "/swapfile", "/swapfile none swap sw 0 0") == \
        "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n"
    assert sw.fstab_edit("", "/swapfile", "/swapfile none swap sw 0 0") == "/swapfile none swap sw 0 0\n"


def test_fstab_edit_removes_only_this_file():
    text = fixture("fstab-duplicates")
    edited = sw.fstab_edit(text, "/swapfile", None)
    assert "/swapfile " not in edited
    assert "/dev/vda2 none swap sw 0 0" in edited and "/srv/other.swap none swap sw,pri=5 0 0" in edited
    assert "# old swap" in edited
    assert sw.fstab_edit(edited, "/swapfile", None) == edited


def test_fstab_ignores_comments_and_other_types():
    text = "#/swapfile none swap sw 0 0\n/swapfile /mnt ext4 loop 0 0\n"
    assert sw.fstab_find(text, "/swapfile") == []
    assert sw.fstab_edit(text, "/swapfile", None) == text


def test_fstab_escaped_path():
    text = "/srv/my\\040swap none swap sw 0 0\n"
    assert sw.fstab_find(text, "/srv/my swap") == ["/srv/my\\040swap none swap sw 0 0"]


# --- the swap header -------------------------------------------------------

def write_header(path, size, page=PAGE, magic=b"SWAPSPACE2"):
    data = bytearray(page)
    struct.pack_into("=II", data, 1024, 1, size // page - 1)
    data[page - 10:page] = magic
    # Like mkswap: write the first page in place, keep the allocated blocks.
    with open(path, "r+b" if os.path.exists(path) else "wb") as handle:
        handle.write(bytes(data))
        handle.truncate(size)


def test_read_swap_header(tmp_path):
    path = str(tmp_path / "swap")
    write_header(path, 64 * MIB)
    assert sw.read_swap_header(path, PAGE) == {"magic": "SWAPSPACE2", "size": 64 * MIB}
    other = tmp_path / "data"
    other.write_bytes(b"x" * 8192)
    assert sw.read_swap_header(str(other), PAGE) is None
    assert sw.read_swap_header(str(tmp_path / "missing"), PAGE) is None


# --- mounts, containers ----------------------------------------------------

MOUNTS = [
    {"source": "/dev/vda", "target": "/", "fstype": "ext4", "options": "rw"},
    {"source": "tmpfs", "target": "/tmp", "fstype": "tmpfs", "options": "rw"},
    {"source": "/dev/vdb", "target": "/srv", "fstype": "xfs", "options": "rw"},
    {"source": "/dev/vdc", "target": "/srv/data", "fstype": "btrfs", "options": "rw,compress=zstd:3"},
]


@pytest.mark.parametrize("directory, target", [
    ("/", "/"), ("/var", "/"), ("/tmp", "/tmp"), ("/tmpx", "/"), ("/srv/data/x", "/srv/data"), ("/srv/dat", "/srv"),
])
def test_mount_of(directory, target):
    assert sw.mount_of(directory, MOUNTS)["target"] == target


def make_root(tmp_path, container=False, cap_sys_admin=True, meminfo="meminfo-16g", fstype="ext4", options="rw,relatime"):
    root = tmp_path / "root"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(fixture(meminfo))
    (root / "proc" / "swaps").write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    (root / "proc" / "self" / "mounts").write_text("/dev/vda / %s %s 0 0\n" % (fstype, options))
    cap = 0x1FFFEFFFFFF if cap_sys_admin else 0x1FFFEFFFFFF & ~(1 << 21)
    (root / "proc" / "self" / "status").write_text("Name:\tpython\nCapEff:\t%016x\n" % cap)
    if container:
        (root / "run").mkdir()
        (root / "run" / ".containerenv").write_text("")
    return root


def test_container_and_capability(tmp_path):
    root = make_root(tmp_path, container=True, cap_sys_admin=False)
    assert sw.container_reason(str(root)) == "/run/.containerenv exists"
    assert not sw.has_cap_sys_admin(str(root))
    plain = make_root(tmp_path / "plain")
    assert sw.container_reason(str(plain)) is None
    assert sw.has_cap_sys_admin(str(plain))


# --- the manager on a simulated kernel -------------------------------------

class FakeKernel:
    """swapon/swapoff/mkswap/fallocate/dd on real files in tmp_path, /proc/swaps in the fixture root.

    Like the kernel, it refuses to rename or unlink an active swapfile (EPERM),
    and it records the swap total after every command so a test can assert the
    host was never without swap.
    """

    def __init__(self, root):
        self.root = str(root)
        self.calls = []
        self.swap_totals = []
        self.fail = {}

    def areas(self):
        lines = open(os.path.join(self.root, "proc/swaps")).read().splitlines()[1:]
        return [line.split() for line in lines]

    def write_areas(self, areas):
        text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        text += "".join("%s\tfile\t\t%s\t\t%s\t\t%s\n" % tuple(a) for a in areas)
        with open(os.path.join(self.root, "proc/swaps"), "w") as handle:
            handle.write(text)

    def activate(self, path, used_kib=0, priority=-2):
        size_kib = os.path.getsize(path) // 1024 - PAGE // 1024
        self.write_areas([a[:1] + a[2:] for a in self.areas()] + [[path, size_kib, used_kib, priority]])

    def active(self, path):
        return any(a[0] == path for a in self.areas())

    def run(self, argv, timeout=None):
        name = os.path.basename(argv[0])
        self.calls.append([name] + list(argv[1:]))
        if name in self.fail:
            return self.fail[name]
        if name == "fallocate":
            self.allocate(argv[-1], int(argv[argv.index("--length") + 1]))
        elif name == "dd":
            self.allocate([a for a in argv if a.startswith("of=")][0][3:],
                          int([a for a in argv if a.startswith("count=")][0][6:]))
        elif name == "mkswap":
            write_header(argv[-1], os.path.getsize(argv[-1]))
        elif name == "swapon":
            priority = int(argv[argv.index("--priority") + 1]) if "--priority" in argv else -2
            self.activate(argv[-1], priority=priority)
        elif name == "swapoff":
            self.write_areas([a[:1] + a[2:] for a in self.areas() if a[0] != argv[-1]])
        self.swap_totals.append(sum(int(a[2]) for a in self.areas()))
        return 0, "", ""

    def bin_path(self, name, required=False):
        return "/usr/sbin/" + name

    @staticmethod
    def allocate(path, size):
        # Real blocks, as fallocate gives: the disk arithmetic reads st_blocks.
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)

    def guard(self, monkeypatch):
        real_unlink, real_rename = os.unlink, os.rename

        def unlink(path, *args, **kwargs):
            if self.active(str(path)):
                raise OSError(errno.EPERM, "Operation not permitted", str(path))
            return real_unlink(path, *args, **kwargs)

        def rename(src, dst, *args, **kwargs):
            if self.active(str(src)) or self.active(str(dst)):
                raise OSError(errno.EPERM, "Operation not permitted", str(src))
            return real_rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(sw.os, "unlink", unlink)
        monkeypatch.setattr(sw.os, "rename", rename)


class FakeStat:
    def __init__(self, free):
        self.f_bavail = free // PAGE
        self.f_frsize = PAGE


def params(tmp_path, **overrides):
    values = {
        "path": str(tmp_path / "swap" / "swapfile"),
        "size": 64 * MIB,
        "state": "present",
        "priority": None,
        "fstab": True,
        "fstab_path": str(tmp_path / "fstab"),
        "create_method": "auto",
        "min_free_disk": 1 * GIB,
        "force": False,
        "relay_threshold": 0.95,
        "swapoff_timeout": 600,
        "allow_in_container": False,
    }
    values.update(overrides)
    return values


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    (tmp_path / "swap").mkdir()
    (tmp_path / "fstab").write_text("UUID=1 / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n")
    kernel = FakeKernel(root)
    kernel.guard(monkeypatch)
    # The fixture root's swaps are read with real paths: keep tmp_path free of symlinks.
    return kernel


def manager(tmp_path, kernel, check_mode=False, free=100 * GIB, **overrides):
    swap = sw.Swapfile(params(tmp_path, **overrides), kernel.run, kernel.bin_path, root=kernel.root,
                       check_mode=check_mode, page_size=PAGE)
    swap.statvfs = lambda path: FakeStat(free)
    return swap


def snapshot(tmp_path, kernel):
    files = {}
    for name in sorted(os.listdir(str(tmp_path / "swap"))):
        path = os.path.join(str(tmp_path / "swap"), name)
        files[name] = (os.path.getsize(path), os.stat(path).st_mode & 0o777)
    return files, (tmp_path / "fstab").read_text(), open(os.path.join(kernel.root, "proc/swaps")).read()


def test_create_then_nothing_to_do(tmp_path, host):
    result = manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    assert result["changed"] and result["changes"] == ["created", "activated", "fstab line written"]
    assert result["method"] == "fallocate" and result["active"] and result["size"] == 64 * MIB
    assert [c[0] for c in host.calls] == ["fallocate", "mkswap", "swapon"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert (tmp_path / "fstab").read_text() == ("UUID=1 / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n"
                                                "%s none swap sw 0 0\n" % path)
    assert sorted(os.listdir(str(tmp_path / "swap"))) == ["swapfile"]
    host.calls = []
    again = manager(tmp_path, host).present()
    assert not again["changed"] and again["changes"] == [] and host.calls == []


def test_check_mode_changes_nothing(tmp_path, host):
    before = snapshot(tmp_path, host)
    result = manager(tmp_path, host, check_mode=True).present()
    assert result["changed"] and "created" in result["changes"]
    assert host.calls == [] and snapshot(tmp_path, host) == before
    assert result["diff"]["before"]["active"] is False and result["diff"]["after"]["active"] is True


def test_resize_of_an_active_file_keeps_swap_and_never_renames_it(tmp_path, host):
    manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    host.swap_totals = []
    host.calls = []
    result = manager(tmp_path, host, size=128 * MIB).present()
    assert result["changes"][:2] == ["activated a standby file while %s was switched off" % path,
                                     "rebuilt (64.0 MiB -> 128.0 MiB)"]
    names = [c[0] for c in host.calls]
    assert names == ["fallocate", "mkswap", "swapon", "swapoff", "fallocate", "mkswap", "swapon", "swapoff"]
    standby = str(tmp_path / "swap" / ".swapfile.swapstandby")
    assert host.calls[2][-1] == standby and host.calls[3][-1] == path
    assert host.calls[6][-1] == path and host.calls[7][-1] == standby
    # Never a moment without swap: every command left at least one area active.
    assert min(host.swap_totals) > 0
    assert sorted(os.listdir(str(tmp_path / "swap"))) == ["swapfile"]
    assert os.path.getsize(path) == 128 * MIB
    assert [a[0] for a in host.areas()] == [path]
    assert (tmp_path / "fstab").read_text().count("swapfile none swap") == 1


def test_resize_refused_by_safety_leaves_everything(tmp_path, host):
    manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    # 3.5 GiB of this file's swap in use; fixture RAM: 16000000 kB total, 4000000 kB available.
    host.write_areas([[path, 65532, 3670016, -2]])
    before = snapshot(tmp_path, host)
    host.calls = []
    with pytest.raises(sw.SwapfileError) as exc:
        manager(tmp_path, host, size=128 * MIB).present()
    assert "Relay's threshold of 95%" in exc.value.msg
    assert exc.value.details["safety"]["swap_to_move"] == 3670016 * 1024
    assert host.calls == [] and snapshot(tmp_path, host) == before


def test_resize_disk_needs_both_files(tmp_path, host):
    manager(tmp_path, host).present()
    before = snapshot(tmp_path, host)
    host.calls = []
    # 128 MiB standby beside the active 64 MiB file, then the new 128 MiB file beside the standby:
    # 128 + 128 - 64 = 192 MiB more than now.
    with pytest.raises(sw.SwapfileError, match="not enough disk space") as exc:
        manager(tmp_path, host, size=128 * MIB, free=1 * GIB + 191 * MIB, min_free_disk=1 * GIB).present()
    assert exc.value.details["disk_needed"] == 192 * MIB
    assert host.calls == [] and snapshot(tmp_path, host) == before
    manager(tmp_path, host, size=128 * MIB, free=1 * GIB + 192 * MIB, min_free_disk=1 * GIB).present()


def test_swapoff_timeout_rolls_back_the_standby(tmp_path, host):
    manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    before = snapshot(tmp_path, host)
    real_run = host.run

    def run(argv, timeout=None):
        if os.path.basename(argv[0]) == "swapoff" and argv[-1] == path:
            host.calls.append(["swapoff", path])
            return 124, "", ""
        return real_run(argv, timeout)
    swap = sw.Swapfile(params(tmp_path, size=128 * MIB), run, host.bin_path, root=host.root, page_size=PAGE)
    swap.statvfs = lambda p: FakeStat(100 * GIB)
    with pytest.raises(sw.SwapfileError, match="swapoff_timeout=600s.*still active"):
        swap.present()
    # The standby was switched off and removed again: the host is as it was.
    assert snapshot(tmp_path, host) == before
    assert host.active(path) and os.path.getsize(path) == 64 * MIB


def test_an_interrupted_run_is_finished_by_the_next(tmp_path, host):
    manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    fstab = (tmp_path / "fstab").read_text()
    host.fail["swapoff"] = (124, "", "")
    with pytest.raises(sw.SwapfileError, match="swapoff_timeout=600s"):
        manager(tmp_path, host, size=128 * MIB).present()
    del host.fail["swapoff"]
    # Every swapoff failed, so the standby stayed active beside the untouched swapfile.
    assert sorted(a[0] for a in host.areas()) == sorted([path, str(tmp_path / "swap" / ".swapfile.swapstandby")])
    assert os.path.getsize(path) == 64 * MIB and (tmp_path / "fstab").read_text() == fstab
    result = manager(tmp_path, host).present()
    assert result["changes"] == ["removed the standby file left by an interrupted run"]
    assert sorted(os.listdir(str(tmp_path / "swap"))) == ["swapfile"]
    assert [a[0] for a in host.areas()] == [path]


def journal_of(kernel):
    return os.path.join(kernel.root, sw.JOURNAL)


def test_leftovers_of_a_crash_are_removed(tmp_path, host):
    manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    standby = str(tmp_path / "swap" / ".swapfile.swapstandby")
    build = str(tmp_path / "swap" / ".swapfile.swapbuild")
    # As a run killed half-way leaves them: the journal lists both.
    with open(journal_of(host), "w") as handle:
        json.dump({"files": [build, standby]}, handle)
    write_header(standby, 64 * MIB)
    host.activate(standby)
    with open(build, "wb") as handle:
        handle.write(b"half")
    result = manager(tmp_path, host).present()
    assert result["changes"] == ["removed the standby file left by an interrupted run",
                                 "removed a half-written file left by an interrupted run"]
    assert sorted(os.listdir(str(tmp_path / "swap"))) == ["swapfile"]
    assert [a[0] for a in host.areas()] == [path]


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("name", [".swapfile.swapstandby", ".swapfile.swapbuild"])
def test_foreign_standby_or_build_files_are_refused_without_force(tmp_path, host, name, state):
    """A file under our temporary names that the journal does not list is not ours: left alone."""
    manager(tmp_path, host).present()
    foreign = tmp_path / "swap" / name
    foreign.write_bytes(b"someone else's data")
    host.calls = []
    before = snapshot(tmp_path, host)
    with pytest.raises(sw.SwapfileError, match="not made by this module .*refusing to switch off or remove it.*force=true"):
        manager(tmp_path, host, state=state).present() if state == "present" else manager(tmp_path, host, state=state).absent()
    assert host.calls == [] and snapshot(tmp_path, host) == before
    assert foreign.read_bytes() == b"someone else's data"
    forced = manager(tmp_path, host, force=True, state=state)
    forced.present() if state == "present" else forced.absent()
    assert not foreign.exists()


def test_nothing_to_do_or_a_refusal_leaves_no_lock_file(tmp_path, host):
    manager(tmp_path, host, fstab=False).present()
    os.unlink(journal_of(host))
    assert not manager(tmp_path, host, fstab=False).present()["changed"]
    assert not os.path.exists(journal_of(host))
    (tmp_path / "root" / "run").mkdir()
    (tmp_path / "root" / "run" / ".containerenv").write_text("")
    with pytest.raises(sw.SwapfileError, match="looks like a container"):
        manager(tmp_path, host, size=128 * MIB).present()
    assert not os.path.exists(journal_of(host))


def test_the_journal_lists_only_files_that_exist_after_a_run(tmp_path, host):
    manager(tmp_path, host).present()
    manager(tmp_path, host, size=128 * MIB).present()
    with open(journal_of(host)) as handle:
        assert json.load(handle) == {"files": []}
    assert os.stat(journal_of(host)).st_mode & 0o777 == 0o600


def test_a_second_run_waits_for_the_lock_then_gives_up(tmp_path, host):
    import fcntl
    manager(tmp_path, host).present()
    with open(journal_of(host), "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        host.calls = []
        with pytest.raises(sw.SwapfileError, match="another swapfile run holds .*swapfile.lock; waited 1 s, nothing was changed"):
            manager(tmp_path, host, size=128 * MIB, swapoff_timeout=1).present()
        assert host.calls == []
    assert manager(tmp_path, host, size=128 * MIB).present()["size"] == 128 * MIB


def test_lock_file_writable_by_others_is_refused(tmp_path, host):
    manager(tmp_path, host).present()
    os.chmod(journal_of(host), 0o666)
    with pytest.raises(sw.SwapfileError, match="writable by others"):
        manager(tmp_path, host, size=128 * MIB).present()


def test_fstab_write_failure_after_swapon_reports_changed_and_says_so(tmp_path, host, monkeypatch):
    def refuse(**_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    # The collection's one atomic write (managed_file.replace_file, under ManagedFile) cannot stage a file.
    monkeypatch.setattr(managed_file.tempfile, "mkstemp", refuse)
    with pytest.raises(sw.SwapfileError) as failed:
        manager(tmp_path, host).present()
    path = str(tmp_path / "swap" / "swapfile")
    assert failed.value.details["changed"] is True
    assert failed.value.details["done"] == ["wrote %s (64.0 MiB)" % path, "activated %s" % path]
    assert "is active now but %s has no line for it, so it will not come back after a reboot" % (tmp_path / "fstab") in failed.value.msg
    assert host.active(path)


def test_a_failure_before_anything_was_done_stays_unchanged(tmp_path, host):
    host.fail["fallocate"] = (1, "", "fallocate: No space left")
    with pytest.raises(sw.SwapfileError) as failed:
        manager(tmp_path, host).present()
    assert "changed" not in failed.value.details and "Already done" not in failed.value.msg


def test_priority_change_cycles_through_the_standby(tmp_path, host):
    manager(tmp_path, host).present()
    host.calls = []
    host.swap_totals = []
    result = manager(tmp_path, host, priority=10).present()
    assert [c[0] for c in host.calls] == ["fallocate", "mkswap", "swapon", "swapoff", "swapon", "swapoff"]
    assert min(host.swap_totals) > 0
    assert result["priority"] == 10
    assert "sw,pri=10" in (tmp_path / "fstab").read_text()


def test_absent(tmp_path, host):
    manager(tmp_path, host).present()
    result = manager(tmp_path, host, state="absent").absent()
    assert result["changes"] == ["deactivated", "fstab line removed", "deleted"]
    assert os.listdir(str(tmp_path / "swap")) == [] and host.areas() == []
    assert (tmp_path / "fstab").read_text() == "UUID=1 / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n"
    assert not manager(tmp_path, host, state="absent").absent()["changed"]


def test_refuses_a_file_that_is_not_swap(tmp_path, host):
    path = tmp_path / "swap" / "swapfile"
    path.write_bytes(b"precious data" * 1000)
    before = snapshot(tmp_path, host)
    for state in ("present", "absent"):
        swap = manager(tmp_path, host, state=state)
        with pytest.raises(sw.SwapfileError, match="not a swapfile"):
            swap.present() if state == "present" else swap.absent()
    assert host.calls == [] and snapshot(tmp_path, host) == before
    result = manager(tmp_path, host, force=True).present()
    assert result["changes"][0] == "rebuilt (12.7 KiB -> 64.0 MiB)"


@pytest.mark.parametrize("fstype, message", [
    ("tmpfs", "tmpfs lives in memory"),
    ("overlay", "overlay filesystems refuse swapon"),
    ("nfs4", "NFS"),
    ("zfs", "ZFS cannot hold a swapfile"),
    ("fuse.sshfs", "FUSE"),
])
def test_refuses_filesystems(tmp_path, monkeypatch, fstype, message):
    root = make_root(tmp_path, fstype=fstype)
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    with pytest.raises(sw.SwapfileError, match=message):
        manager(tmp_path, kernel).present()
    assert kernel.calls == [] and os.listdir(str(tmp_path / "swap")) == []


def test_refuses_compressed_btrfs(tmp_path):
    root = make_root(tmp_path, fstype="btrfs", options="rw,relatime,compress=zstd:3,space_cache=v2")
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    with pytest.raises(sw.SwapfileError, match="compression"):
        manager(tmp_path, kernel).present()
    assert kernel.calls == []


def test_refuses_snapshotted_btrfs_subvolume(tmp_path):
    root = make_root(tmp_path, fstype="btrfs")
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    kernel.fail["btrfs"] = None

    def run(argv, timeout=None):
        kernel.calls.append(argv)
        if argv[1:3] == ["subvolume", "show"]:
            return 0, fixture("btrfs-subvolume-show-snapshotted"), ""
        if argv[1:3] == ["property", "get"]:
            return 0, "", ""
        return 0, "btrfs-progs v6.2", ""
    swap = sw.Swapfile(params(tmp_path), run, kernel.bin_path, root=kernel.root, page_size=PAGE)
    with pytest.raises(sw.SwapfileError, match="has snapshots"):
        swap.present()
    assert os.listdir(str(tmp_path / "swap")) == []


def test_btrfs_mkswapfile_when_progs_are_new_enough(tmp_path):
    root = make_root(tmp_path, fstype="btrfs")
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    seen = []

    def run(argv, timeout=None):
        seen.append(argv[1:])
        if argv[1:3] == ["subvolume", "show"]:
            return 0, fixture("btrfs-subvolume-show-plain"), ""
        if argv[1:3] == ["property", "get"]:
            return 0, "", ""
        if argv[1:] == ["--version"]:
            return 0, "btrfs-progs v6.6.3", ""
        if argv[1:3] == ["filesystem", "mkswapfile"]:
            write_header(argv[-1], int(argv[argv.index("--size") + 1]))
            return 0, "", ""
        return kernel.run(argv, timeout)
    swap = sw.Swapfile(params(tmp_path), run, kernel.bin_path, root=kernel.root, page_size=PAGE)
    swap.statvfs = lambda path: FakeStat(100 * GIB)
    result = swap.present()
    assert result["method"] == "btrfs-mkswapfile"
    assert ["filesystem", "mkswapfile", "--size", str(64 * MIB), str(tmp_path / "swap" / ".swapfile.swapbuild")] in seen


def test_old_btrfs_progs_set_nocow_on_the_empty_file(tmp_path):
    root = make_root(tmp_path, fstype="btrfs")
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    sizes_at_chattr = []

    def run(argv, timeout=None):
        if argv[1:3] == ["subvolume", "show"]:
            return 0, fixture("btrfs-subvolume-show-plain"), ""
        if argv[1:3] == ["property", "get"]:
            return 0, "", ""
        if argv[1:] == ["--version"]:
            return 0, "btrfs-progs v5.16.2", ""
        if os.path.basename(argv[0]) == "chattr":
            sizes_at_chattr.append(os.path.getsize(argv[-1]))
        return kernel.run(argv, timeout)
    swap = sw.Swapfile(params(tmp_path), run, kernel.bin_path, root=kernel.root, page_size=PAGE)
    swap.statvfs = lambda path: FakeStat(100 * GIB)
    assert swap.present()["method"] == "btrfs-nocow-fallocate"
    assert sizes_at_chattr == [0]
    assert [c[0] for c in kernel.calls] == ["chattr", "fallocate", "mkswap", "swapon"]


def test_auto_falls_back_to_dd_when_swapon_refuses_preallocated_extents(tmp_path, host):
    refused = []

    def run(argv, timeout=None):
        if os.path.basename(argv[0]) == "swapon" and not refused:
            refused.append(argv)
            return 255, "", "swapon: /x: swapon failed: Invalid argument"
        return host.run(argv, timeout)
    swap = sw.Swapfile(params(tmp_path), run, host.bin_path, root=host.root, page_size=PAGE)
    swap.statvfs = lambda path: FakeStat(100 * GIB)
    result = swap.present()
    assert result["method"] == "dd"
    assert [c[0] for c in host.calls] == ["fallocate", "mkswap", "dd", "mkswap", "swapon"]
    assert any("rewritten with dd" in c for c in result["changes"]) and result["active"]


def test_container_needs_the_opt_in(tmp_path, monkeypatch):
    root = make_root(tmp_path, container=True)
    (tmp_path / "swap").mkdir()
    (tmp_path / "fstab").write_text("")
    kernel = FakeKernel(root)
    with pytest.raises(sw.SwapfileError, match="looks like a container"):
        manager(tmp_path, kernel).present()
    assert kernel.calls == [] and os.listdir(str(tmp_path / "swap")) == []
    assert manager(tmp_path, kernel, allow_in_container=True).present()["active"]


def test_container_in_check_mode_plans_and_says_why(tmp_path):
    """Check mode inside a container shows the plan and the reason a real run would be refused."""
    root = make_root(tmp_path, container=True)
    (tmp_path / "swap").mkdir()
    (tmp_path / "fstab").write_text("")
    kernel = FakeKernel(root)
    result = manager(tmp_path, kernel, check_mode=True).present()
    assert result["changed"] and result["changes"] == ["created", "activated", "fstab line written"]
    assert result["blocked"].startswith("this looks like a container (/run/.containerenv exists)")
    assert result["size"] == 64 * MIB
    assert kernel.calls == [] and os.listdir(str(tmp_path / "swap")) == [] and (tmp_path / "fstab").read_text() == ""
    with pytest.raises(sw.SwapfileError) as refused:
        manager(tmp_path, kernel).present()
    assert refused.value.details == {"blocked": result["blocked"]}
    assert manager(tmp_path, kernel, check_mode=True, allow_in_container=True).present()["blocked"] is None


def test_no_cap_sys_admin(tmp_path):
    root = make_root(tmp_path, cap_sys_admin=False)
    (tmp_path / "swap").mkdir()
    kernel = FakeKernel(root)
    with pytest.raises(sw.SwapfileError, match="CAP_SYS_ADMIN"):
        manager(tmp_path, kernel).present()
    assert kernel.calls == []


def test_refuses_a_directory(tmp_path, host):
    (tmp_path / "swap" / "swapfile").mkdir()
    with pytest.raises(sw.SwapfileError, match="is a directory"):
        manager(tmp_path, host).present()


def test_disk_space_for_a_new_file(tmp_path, host):
    with pytest.raises(sw.SwapfileError, match="min_free_disk"):
        manager(tmp_path, host, free=1 * GIB + 63 * MIB).present()
    assert os.listdir(str(tmp_path / "swap")) == []


def test_fstab_is_replaced_atomically_keeping_its_mode(tmp_path, host):
    fstab = tmp_path / "fstab"
    os.chmod(str(fstab), 0o640)
    manager(tmp_path, host).present()
    assert os.stat(str(fstab)).st_mode & 0o777 == 0o640
    assert [name for name in os.listdir(str(tmp_path)) if name.startswith(".fstab.")] == []


def test_fstab_through_a_symlink_with_crlf_stays_a_symlink_with_crlf(tmp_path, host):
    """The operator's fstab is written as every operator file is (ManagedFile): the link stays, its target changes."""
    real = tmp_path / "etc-real" / "fstab"
    real.parent.mkdir()
    real.write_bytes(b"UUID=1 / ext4 defaults 0 1\r\n")
    (tmp_path / "fstab").unlink()
    (tmp_path / "fstab").symlink_to(real)
    manager(tmp_path, host).present()
    assert os.path.islink(str(tmp_path / "fstab"))
    lines = real.read_bytes().split(b"\r\n")
    assert lines[0] == b"UUID=1 / ext4 defaults 0 1" and lines[1].startswith(str(tmp_path / "swap" / "swapfile").encode())
    assert b"\n" not in real.read_bytes().replace(b"\r\n", b"")


def test_fstab_false_leaves_the_file_alone(tmp_path, host):
    before = (tmp_path / "fstab").read_text()
    result = manager(tmp_path, host, fstab=False).present()
    assert result["fstab_line"] is None and result["active"]
    assert (tmp_path / "fstab").read_text() == before


# --- the plan and the apply step --------------------------------------------

def record_applied_steps(monkeypatch):
    """The steps each real run carried out, as Apply.run received them."""
    applied = []
    real_run = sw.Apply.run

    def run(self, plan):
        applied.append(list(plan.steps))
        return real_run(self, plan)
    monkeypatch.setattr(sw.Apply, "run", run)
    return applied


def prepare_interrupted_resize(tmp_path, host):
    host.fail["swapoff"] = (124, "", "")
    with pytest.raises(sw.SwapfileError):
        manager(tmp_path, host, size=128 * MIB).present()
    del host.fail["swapoff"]


@pytest.mark.parametrize("case, overrides, prepare", [
    ("create", {}, None),
    ("resize", {"size": 128 * MIB}, "present"),
    ("priority", {"priority": 10}, "present"),
    ("fstab only", {}, "present-without-fstab"),
    ("leftover standby", {}, "interrupted"),
    ("absent", {"state": "absent"}, "present"),
])
def test_a_real_run_carries_out_exactly_what_check_mode_planned(tmp_path, host, monkeypatch, case, overrides, prepare):
    if prepare == "present":
        manager(tmp_path, host).present()
    elif prepare == "present-without-fstab":
        manager(tmp_path, host, fstab=False).present()
    elif prepare == "interrupted":
        manager(tmp_path, host).present()
        prepare_interrupted_resize(tmp_path, host)
    converge = "absent" if overrides.get("state") == "absent" else "present"
    checked = getattr(manager(tmp_path, host, check_mode=True, **overrides), converge)()
    planned_steps = manager(tmp_path, host, check_mode=True, **overrides).plan(converge)[0].steps
    applied = record_applied_steps(monkeypatch)
    real = getattr(manager(tmp_path, host, **overrides), converge)()
    assert applied == [planned_steps] and planned_steps, case
    for key in ("changed", "changes", "summary", "size", "active", "fstab_line", "method", "swap_before"):
        assert real[key] == checked[key], (case, key)
    # The diff too, but for the priority the kernel gives a file activated without one.
    assert real["diff"]["before"] == checked["diff"]["before"]
    assert dict(real["diff"]["after"], priority=None) == dict(checked["diff"]["after"], priority=None)
    again = getattr(manager(tmp_path, host, **overrides), converge)()
    assert not again["changed"] and again["summary"] == [] and applied == [planned_steps], case


def test_summary_says_what_changed_in_a_few_words(tmp_path, host):
    path = str(tmp_path / "swap" / "swapfile")
    assert manager(tmp_path, host).present()["summary"] == ["%s: 0 B -> 64.0 MiB, active, fstab line added" % path]
    assert manager(tmp_path, host, size=128 * MIB, priority=5).present()["summary"] == [
        "%s: 64.0 MiB -> 128.0 MiB, priority -2 -> 5, fstab line updated" % path]
    assert manager(tmp_path, host, size=128 * MIB, priority=7).present()["summary"] == [
        "%s: priority 5 -> 7, fstab line updated" % path]
    os.chmod(path, 0o644)
    assert manager(tmp_path, host, size=128 * MIB, priority=7).present()["summary"] == [
        "%s: set mode 0600 and owner root" % path]
    assert manager(tmp_path, host, state="absent").absent()["summary"] == [
        "%s: 128.0 MiB -> 0 B, inactive, fstab line removed" % path]
    assert manager(tmp_path, host, state="absent").absent()["summary"] == []


def test_swap_before_and_after_come_with_the_result(tmp_path, host):
    path = str(tmp_path / "swap" / "swapfile")
    host.write_areas([["/dev/vda2", 1048572, 2048, -2]])
    planned = manager(tmp_path, host, check_mode=True).present()
    assert planned["swap_before"] == {"total": 1048572 * 1024, "used": 2048 * 1024, "areas": [
        {"path": "/dev/vda2", "type": "file", "size": 1048572 * 1024, "used": 2048 * 1024, "priority": -2}]}
    assert planned["swap_after"]["total"] == 1048572 * 1024 + 64 * MIB and planned["swap_after"]["used"] is None
    assert [a["path"] for a in planned["swap_after"]["areas"]] == ["/dev/vda2", path]
    real = manager(tmp_path, host).present()
    # As the kernel counts it: the area is the file less its header page.
    assert real["swap_after"]["total"] == 1048572 * 1024 + 64 * MIB - PAGE and real["swap_after"]["used"] == 2048 * 1024
    again = manager(tmp_path, host).present()
    assert again["swap_before"] == again["swap_after"] == real["swap_after"]
    assert manager(tmp_path, host, check_mode=True, state="absent").absent()["swap_after"]["total"] == 1048572 * 1024


def write_relay_config(checkout, text):
    (checkout / "relay" / "config.yml").write_text(text)


def test_relays_figure_and_threshold_come_from_the_checkout(tmp_path, host):
    from checkouts import minimal_checkout
    checkout = minimal_checkout(tmp_path / "sentry")
    write_relay_config(checkout, "health:\n  max_memory_percent: 0.9\n")
    result = manager(tmp_path, host, relay_threshold=None, project_dir=str(checkout)).present()
    # Fixture RAM: 16000000 kB, 4000000 kB available: 75% in use, as Relay 24.8.0 counts the host without a limit.
    assert result["relay"]["threshold"] == 0.9 and result["relay"]["used_percent"] == 75.0
    assert result["relay"]["release"] == "24.8.0"
    # 2900000 kB in swap would bring RAM in use to 93.1%: under 95% but over the checkout's 90%.
    host.write_areas([[str(tmp_path / "swap" / "swapfile"), 65532, 2900000, -2]])
    with pytest.raises(sw.SwapfileError, match="Relay's threshold of 90%"):
        manager(tmp_path, host, relay_threshold=None, project_dir=str(checkout), size=128 * MIB).present()
    assert manager(tmp_path, host, relay_threshold=0.95, project_dir=str(checkout), size=128 * MIB).present()["changed"]
    assert manager(tmp_path, host, size=128 * MIB).present()["relay"] is None


def test_a_threshold_outside_the_range_in_the_checkout_is_refused(tmp_path, host):
    from checkouts import minimal_checkout
    checkout = minimal_checkout(tmp_path / "sentry")
    write_relay_config(checkout, "health:\n  max_memory_percent: 95\n")
    with pytest.raises(sw.SwapfileError, match=r"Relay's threshold 95.0 \(from .*config.yml\) is outside \(0, 1\]"):
        manager(tmp_path, host, relay_threshold=None, project_dir=str(checkout)).present()
    assert host.calls == []


# --- the kernel's swap settings ----------------------------------------------

def running(kernel, name):
    with open(os.path.join(kernel.root, "proc", "sys", *name.split("."))) as handle:
        return handle.read().strip()


@pytest.fixture
def settings_host(tmp_path, host):
    (tmp_path / "root" / "proc" / "sys" / "vm").mkdir(parents=True)
    for name, value in (("swappiness", "60"), ("vfs_cache_pressure", "100")):
        (tmp_path / "root" / "proc" / "sys" / "vm" / name).write_text(value + "\n")
    manager(tmp_path, host).present()
    return host


def settings(tmp_path, **overrides):
    values = {"swappiness": 30, "vfs_cache_pressure": 100, "sysctl_file": str(tmp_path / "60-swap.conf")}
    values.update(overrides)
    return values


SETTINGS_FILE = ("# Managed by Ansible (role sentry_selfhosted.memory.swap): local changes are overwritten.\n"
                 "vm.swappiness=30\nvm.vfs_cache_pressure=100\n")


def test_settings_file_and_running_values_are_kept_in_one_call(tmp_path, settings_host):
    conf = tmp_path / "60-swap.conf"
    planned = manager(tmp_path, settings_host, check_mode=True, **settings(tmp_path)).present()
    assert planned["summary"] == ["%s written" % conf, "vm.swappiness 60 -> 30"]
    assert planned["diff"]["sysctl_file"] == [None, SETTINGS_FILE]
    assert not conf.exists() and running(settings_host, "vm.swappiness") == "60"
    result = manager(tmp_path, settings_host, **settings(tmp_path)).present()
    assert result["changed"] and result["changes"] == [] and result["summary"] == planned["summary"]
    assert conf.read_text() == SETTINGS_FILE and os.stat(str(conf)).st_mode & 0o777 == 0o644
    assert running(settings_host, "vm.swappiness") == "30" and running(settings_host, "vm.vfs_cache_pressure") == "100"
    assert result["sysctl_before"] == {"vm.swappiness": 60, "vm.vfs_cache_pressure": 100}
    assert result["sysctl_after"] == {"vm.swappiness": 30, "vm.vfs_cache_pressure": 100}
    again = manager(tmp_path, settings_host, **settings(tmp_path)).present()
    assert not again["changed"] and again["summary"] == [] and again["diff"]["sysctl_file"] is None


def test_only_what_differs_is_set(tmp_path, settings_host):
    conf = tmp_path / "60-swap.conf"
    conf.write_text(SETTINGS_FILE)
    os.chmod(str(conf), 0o644)
    (tmp_path / "root" / "proc" / "sys" / "vm" / "swappiness").write_text("30\n")
    before = os.stat(str(conf))
    (tmp_path / "root" / "proc" / "sys" / "vm" / "vfs_cache_pressure").write_text("50\n")
    result = manager(tmp_path, settings_host, **settings(tmp_path)).present()
    assert result["summary"] == ["vm.vfs_cache_pressure 50 -> 100"]
    assert os.stat(str(conf)).st_ino == before.st_ino
    # A mode that is not 0644 rewrites the file, as the copy module did.
    os.chmod(str(conf), 0o600)
    assert manager(tmp_path, settings_host, **settings(tmp_path)).present()["summary"] == ["%s written" % conf]
    assert os.stat(str(conf)).st_mode & 0o777 == 0o644


def test_settings_apply_false_only_writes_the_file(tmp_path, settings_host):
    result = manager(tmp_path, settings_host, sysctl_apply=False, **settings(tmp_path)).present()
    assert result["summary"] == ["%s written" % (tmp_path / "60-swap.conf")]
    assert running(settings_host, "vm.swappiness") == "60" and result["sysctl_after"] == result["sysctl_before"]


def test_settings_without_a_file_set_the_running_values(tmp_path, settings_host):
    result = manager(tmp_path, settings_host, **settings(tmp_path, sysctl_file=None)).present()
    assert result["summary"] == ["vm.swappiness 60 -> 30"] and running(settings_host, "vm.swappiness") == "30"
    assert os.listdir(str(tmp_path)).count("60-swap.conf") == 0


def test_absent_removes_the_settings_file_and_leaves_the_running_values(tmp_path, settings_host):
    manager(tmp_path, settings_host, **settings(tmp_path)).present()
    path = str(tmp_path / "swap" / "swapfile")
    result = manager(tmp_path, settings_host, state="absent", **settings(tmp_path)).absent()
    assert result["changes"] == ["deactivated", "fstab line removed", "deleted"]
    assert result["summary"] == ["%s: 64.0 MiB -> 0 B, inactive, fstab line removed" % path,
                                 "%s removed" % (tmp_path / "60-swap.conf")]
    assert not (tmp_path / "60-swap.conf").exists() and running(settings_host, "vm.swappiness") == "30"
    assert not manager(tmp_path, settings_host, state="absent", **settings(tmp_path)).absent()["changed"]


def test_settings_change_alone_is_not_refused_in_a_container(tmp_path, settings_host):
    """As before the module kept them: the container refusal is about swap areas, not about the settings file."""
    (tmp_path / "root" / "run").mkdir()
    (tmp_path / "root" / "run" / ".containerenv").write_text("")
    result = manager(tmp_path, settings_host, sysctl_apply=False, **settings(tmp_path)).present()
    assert result["changed"] and result["blocked"] is None and (tmp_path / "60-swap.conf").exists()


def test_a_settings_file_that_cannot_be_written_says_what_was_done(tmp_path, settings_host):
    result = manager(tmp_path, settings_host, **settings(tmp_path, sysctl_file=str(tmp_path / "missing" / "x.conf")))
    with pytest.raises(sw.SwapfileError, match="cannot write .*missing/x.conf") as failed:
        result.present()
    assert "changed" not in failed.value.details
    with pytest.raises(sw.SwapfileError, match="not a regular file"):
        manager(tmp_path, settings_host, **settings(tmp_path, sysctl_file=str(tmp_path / "swap"))).present()
