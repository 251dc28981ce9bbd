# SPDX-License-Identifier: GPL-3.0-or-later
"""The /proc and cgroup parser against fixture trees of several host shapes, and the history of peaks' file."""

import json
import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck
HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
GIB = 1024 ** 3


def host(name):
    return os.path.join(HOSTS, name)


def test_meminfo_converts_kb_to_bytes_and_keeps_plain_counts():
    info = hm.read_meminfo(host("v2-relay-unlimited"))
    assert info["MemTotal"] == 16372436992
    assert info["MemAvailable"] == 294132 * 1024
    assert info["HugePages_Total"] == 0  # no unit: not multiplied


def proc_tree(tmp_path, processes):
    """A /proc with a status file per (pid, ppid, name, rss_kb); rss_kb None for a kernel thread."""
    for pid, ppid, name, rss_kb in processes:
        folder = tmp_path / "proc" / str(pid)
        folder.mkdir(parents=True)
        lines = ["Name:\t%s" % name, "Umask:\t0022", "State:\tS (sleeping)", "Pid:\t%d" % pid, "PPid:\t%d" % ppid]
        if rss_kb is not None:
            lines.append("VmRSS:\t%d kB" % rss_kb)
        (folder / "status").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def test_top_processes_leave_out_the_callers_own_chain(tmp_path):
    root = proc_tree(tmp_path, [
        (1, 0, "systemd", 12000),
        (2, 0, "kthreadd", None),
        (300, 1, "dockerd", 90000),
        (400, 300, "java", 1500000),
        (500, 1, "ansible-playbook", 120000),   # the controller (local connection)
        (510, 500, "ansible-playboo", 110000),  # its worker
        (520, 510, "sh", 900),
        (530, 520, "python3", 60000),           # AnsiballZ_memory_info.py
        (540, 530, "python3", 70000),           # the module itself
        (600, 1, "snuba", 80000),
    ])
    names = [p["name"] for p in hm.top_processes(root, count=10, leave_out=540)]
    assert names == ["java", "dockerd", "snuba", "systemd"]
    # Without leave_out every process with a resident set is listed, largest first.
    everything = hm.top_processes(root, count=10)
    assert [p["pid"] for p in everything] == [400, 500, 510, 300, 600, 540, 530, 1, 520]
    assert hm.top_processes(root, count=2, leave_out=540) == [
        {"pid": 400, "name": "java", "rss": 1500000 * 1024}, {"pid": 300, "name": "dockerd", "rss": 90000 * 1024}]


def test_cgroup_v1_unlimited_and_swap():
    root = host("v1-no-psi-two-swaps")
    figures = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v1", root), 1)
    assert figures == {
        # rss and shmem: v1 does not break kernel memory down in memory.stat.
        "use": 650000000 + 20000000,
        "current": 900000000,
        "usage": 850000000,
        "anon": 650000000,
        "limit": None,
        "peak": 1200000000,
        "swap": 50000000,
    }


def test_hybrid_reads_the_v1_memory_controller():
    root = host("hybrid-relay-limited-zfs")
    assert hm.cgroup_mode(root) == "hybrid"
    assert hm.memory_cgroup_version("hybrid") == 1
    figures = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "hybrid", root), 1)
    assert figures["limit"] == GIB and figures["anon"] == 1030000000
    view = ck.relay_view(hm.read_meminfo(root), (24, 8, 0), "hybrid", figures)
    assert view["measures"] == "cgroup" and view["would_reject"] is True


def test_cgroup_v2_figures():
    figures = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", host("v2-relay-limited")), 2)
    assert figures == {
        # anon, shmem, kernel stacks, page tables, sockets, unreclaimable slab and per-cpu data; not page cache
        # (file, active_file, inactive_file), not reclaimable slab, not the "kernel" total that holds it.
        "use": 1468006400 + 4194304 + 327680 + 2097152 + 65536 + 1048576 + 8192,
        "current": 1610612736,
        "usage": 1610612736 - 41943040,
        "anon": 1468006400,
        "limit": 2 * GIB,
        "peak": 2000000000,
        "swap": 1048576,
    }


@pytest.mark.parametrize("name, mode", [
    ("v2-relay-unlimited", "v2"),
    ("v1-no-psi-two-swaps", "v1"),
    ("hybrid-relay-limited-zfs", "hybrid"),
])
def test_cgroup_mode(name, mode):
    assert hm.cgroup_mode(host(name)) == mode


def test_swap_areas_partition_file_and_escaped_space():
    areas = hm.read_swaps(host("v1-no-psi-two-swaps"))
    assert areas == [
        {"path": "/dev/sda2", "type": "partition", "size": 2 * GIB, "used": GIB, "priority": -2},
        {"path": "/var/swap files/extra", "type": "file", "size": 4 * GIB, "used": 0, "priority": 10},
    ]
    assert hm.read_swaps(host("v2-relay-unlimited")) == []


def test_swap_area_paths_with_tab_newline_and_backslash(tmp_path):
    """The kernel writes space, tab, newline and backslash of a path as octal escapes."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "swaps").write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/srv/a\\011tab\\012nl\\134back\\040sp file\t\t1024\t\t0\t\t-2\n")
    assert [a["path"] for a in hm.read_swaps(str(tmp_path))] == ["/srv/a\ttab\nnl\\back sp"]
    assert hm.unescape_octal("/plain/path") == "/plain/path"


def test_pressure_present_and_absent():
    pressure = hm.read_pressure(host("v2-relay-unlimited"))
    assert pressure["some"] == {"avg10": 12.5, "avg60": 8.25, "avg300": 3.0, "total": 123456789}
    assert pressure["full"]["avg60"] == 2.5
    assert hm.read_pressure(host("v1-no-psi-two-swaps")) is None


def test_vmstat_oom_kills_and_missing_counter():
    assert hm.read_vmstat(host("v2-relay-unlimited"))["oom_kill"] == 3
    assert "oom_kill" not in hm.read_vmstat(host("v1-no-psi-two-swaps"))


def test_sysctls():
    assert hm.read_memory_sysctls(host("v2-relay-limited")) == {
        "vm.swappiness": 5,
        "vm.vfs_cache_pressure": 100,
        "vm.overcommit_memory": 0,
        "vm.overcommit_ratio": 50,
        "vm.min_free_kbytes": 67584,
    }
    assert hm.read_sysctl("vm.nonexistent", host("v2-relay-limited")) is None


def test_zfs_arc():
    assert hm.read_zfs_arc_size(host("hybrid-relay-limited-zfs")) == 4 * GIB
    assert hm.read_zfs_arc_size(host("v2-relay-unlimited")) is None


def test_host_figures_used_is_total_minus_available():
    ram = hm.host_memory_from_meminfo(hm.read_meminfo(host("v2-relay-unlimited")))
    assert ram["used"] == ram["total"] - ram["available"] == 16071245824
    assert ram["shmem"] == 123456 * 1024 and ram["slab_unreclaimable"] == 234567 * 1024


def test_unreadable_meminfo_is_a_clear_error(tmp_path):
    with pytest.raises(hm.MemoryReadError, match="proc/meminfo"):
        hm.read_meminfo(str(tmp_path))
    with pytest.raises(hm.MemoryReadError, match="no MemFree line"):
        hm.read_meminfo(host("broken-meminfo"))


def test_psutil_and_procfs_backends_give_identical_figures():
    import psutil  # pinned in tests/requirements.txt

    for name in ("v2-relay-unlimited", "v2-relay-limited", "v1-no-psi-two-swaps", "hybrid-relay-limited-zfs"):
        root = host(name)
        saved = psutil.PROCFS_PATH
        try:
            via_psutil = hm.choose_backend("psutil", root)
            assert via_psutil.name == "psutil"
            assert via_psutil.meminfo() == hm.ProcfsBackend(root).meminfo(), name
        finally:
            psutil.PROCFS_PATH = saved


@pytest.mark.parametrize("ram_gib, swap_gib", [(2, 2), (4, 2), (7.5, 4), (16, 8), (32, 16), (128, 16)])
def test_recommended_swap(ram_gib, swap_gib):
    assert hm.recommended_swap_bytes(int(ram_gib * GIB)) == swap_gib * GIB


PEAKS = {"version": 1, "since": 1765000000, "services": {"web": {"mb": 1200, "at": 1765000000}}}


def test_the_peaks_of_use_are_kept_root_alone_and_read_back(tmp_path):
    path = tmp_path / "state" / "use-peaks.json"
    assert hm.read_peaks(str(path)) is None
    assert hm.write_peaks(str(path), PEAKS) is True
    assert hm.read_peaks(str(path)) == PEAKS
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o755"
    mtime = path.stat().st_mtime_ns
    os.chmod(str(path), 0o644)
    # The same history: not rewritten, only made root's alone to read again.
    assert hm.write_peaks(str(path), PEAKS) is False
    assert path.stat().st_mtime_ns == mtime and oct(path.stat().st_mode & 0o777) == "0o600"
    grown = dict(PEAKS, services={"web": {"mb": 1300, "at": 1765086400}})
    assert hm.write_peaks(str(path), grown) is True and hm.read_peaks(str(path)) == grown


@pytest.mark.parametrize("forge, message", [
    ("symlink", "is a symlink"),
    ("group-writable", "is writable by others (mode 0664)"),
    ("directory", "is not a regular file"),
    ("not-json", "cannot be read as JSON"),
])
def test_a_history_of_peaks_that_cannot_be_trusted_or_read_is_refused_naming_the_variable(tmp_path, forge, message):
    path = tmp_path / "use-peaks.json"
    if forge == "symlink":
        (tmp_path / "elsewhere.json").write_text(json.dumps(PEAKS))
        path.symlink_to(tmp_path / "elsewhere.json")
    elif forge == "directory":
        path.mkdir()
    else:
        path.write_text(json.dumps(PEAKS) if forge == "group-writable" else "{not json")
        os.chmod(str(path), 0o664 if forge == "group-writable" else 0o600)
    with pytest.raises(hm.PeaksFileError, match=r"use-peaks.json \(sentry_selfhosted_peaks_file\) .*%s" % message.replace("(", r"\(").replace(")", r"\)")):
        hm.read_peaks(str(path))
