# SPDX-License-Identifier: GPL-3.0-or-later
"""The /proc and cgroup parser against fixture trees of several host shapes."""

import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm

HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
GIB = 1024 ** 3


def host(name):
    return os.path.join(HOSTS, name)


def test_meminfo_converts_kb_to_bytes_and_keeps_plain_counts():
    info = hm.read_meminfo(host("v2-relay-unlimited"))
    assert info["MemTotal"] == 16372436992
    assert info["MemAvailable"] == 294132 * 1024
    assert info["HugePages_Total"] == 0  # no unit: not multiplied


def test_original_outage_figures_are_reproduced():
    """Relay 24.8.0, cgroup v2, relay without limit: the whole host, as in the report."""
    root = host("v2-relay-unlimited")
    meminfo = hm.read_meminfo(root)
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = hm.relay_view(meminfo, (24, 8, 0), hm.cgroup_mode(root), relay_cg)
    assert (view["used"], view["total"]) == (16071245824, 16372436992)
    assert view["used_percent"] == 98.16
    assert view["measures"] == "host"
    assert view["would_reject"] is True
    assert view["headroom"] < 0


def test_limit_on_relay_makes_relay_measure_itself():
    root = host("v2-relay-limited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = hm.relay_view(hm.read_meminfo(root), (24, 8, 0), "v2", relay_cg)
    assert view["measures"] == "cgroup"
    assert view["used"] == 1468006400  # anon of the relay cgroup
    assert view["total"] == 2 * GIB
    assert view["would_reject"] is False
    assert view["headroom"] == int(2 * GIB * 0.95) - 1468006400


def test_unlimited_relay_on_v2_with_current_release_uses_cgroup_against_ram():
    root = host("v2-relay-unlimited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = hm.relay_view(hm.read_meminfo(root), (26, 8, 0), "v2", relay_cg)
    assert view["measures"] == "cgroup"
    assert (view["used"], view["total"]) == (1468006400, 16372436992)


def test_max_memory_bytes_trips_before_the_percentage():
    root = host("v2-relay-limited")
    relay_cg = hm.read_cgroup_memory(hm.cgroup_dir_of_pid(4242, "v2", root), 2)
    view = hm.relay_view(hm.read_meminfo(root), (25, 10, 0), "v2", relay_cg, 0.95, max_bytes=1400000000)
    assert view["would_reject"] is True
    assert view["headroom"] == 1400000000 - 1468006400


def test_release_before_24_7_1_counts_page_cache():
    meminfo = hm.read_meminfo(host("v1-no-psi-two-swaps"))
    view = hm.relay_view(meminfo, (24, 5, 0), "v1", None)
    assert view["used"] == meminfo["MemTotal"] - meminfo["MemFree"]


def test_relay_not_found_falls_back_to_host_and_says_so():
    meminfo = hm.read_meminfo(host("v1-no-psi-two-swaps"))
    view = hm.relay_view(meminfo, (26, 8, 0), "v1", None)
    assert view["measures"] == "host"
    assert "not found" in view["source"]
    # One plain statement: no relay container runs, host figures stand in (no claim about a container that is not there).
    assert "no relay container runs" in view["source"] and "Relay itself" not in view["source"]


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


@pytest.mark.parametrize("threshold, rejects", [(0.5, True), (0.99, False), (1.0, False)])
def test_threshold_is_inclusive_like_relay(threshold, rejects):
    meminfo = {"MemTotal": 1000, "MemFree": 100, "MemAvailable": 500}
    assert hm.relay_view(meminfo, (24, 8, 0), "v2", None, threshold)["would_reject"] is rejects
    at_threshold = hm.relay_view(meminfo, (24, 8, 0), "v2", None, 0.5)
    assert at_threshold["used"] == 500 and at_threshold["would_reject"] is True


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
    view = hm.relay_view(hm.read_meminfo(root), (24, 8, 0), "hybrid", figures)
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


def test_env_files_custom_wins(tmp_path):
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=sentry-self-hosted\nRELAY_IMAGE=getsentry/relay:24.8.0\n# c\n")
    (tmp_path / ".env.custom").write_text("RELAY_IMAGE='getsentry/relay:25.10.0'\n")
    env = hm.checkout_env(str(tmp_path))
    assert env["COMPOSE_PROJECT_NAME"] == "sentry-self-hosted"
    assert hm.relay_release(env) == (25, 10, 0)
    assert hm.checkout_env(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize("ram_gib, swap_gib", [(2, 2), (4, 2), (7.5, 4), (16, 8), (32, 16), (128, 16)])
def test_recommended_swap(ram_gib, swap_gib):
    assert hm.recommended_swap_bytes(int(ram_gib * GIB)) == swap_gib * GIB


def test_compose_containers_and_their_cgroups():
    root = host("v2-relay-limited")
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[1] == "ps":
            return 0, "bbbb\n", ""
        return 0, ('[{"Id": "bbbb", "Name": "/sentry-self-hosted-relay-1", "State": {"Pid": 4242},'
                   ' "Config": {"Labels": {"com.docker.compose.service": "relay"}},'
                   ' "HostConfig": {"Memory": 2147483648, "CgroupnsMode": "private"}}]'), ""

    found = hm.container_memory(hm.list_compose_containers(run, "sentry-self-hosted"), "v2", root)
    assert calls[0] == ["docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=sentry-self-hosted"]
    assert found[0]["service"] == "relay" and found[0]["name"] == "sentry-self-hosted-relay-1"
    assert found[0]["limit"] == found[0]["configured_limit"] == 2 * GIB
    assert found[0]["anon"] == 1468006400


def test_container_whose_cgroup_vanished_is_reported_not_raised():
    containers = [{"id": "x", "pid": 999999, "service": "web"}]
    hm.container_memory(containers, "v2", host("v2-relay-limited"))
    assert "error" in containers[0] and "usage" not in containers[0]


def test_docker_failure_is_a_clear_error():
    with pytest.raises(hm.MemoryReadError, match="docker ps failed: Cannot connect"):
        hm.list_compose_containers(lambda argv: (1, "", "Cannot connect to the Docker daemon"), "p")
