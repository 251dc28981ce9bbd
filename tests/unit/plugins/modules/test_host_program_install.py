# SPDX-License-Identifier: GPL-3.0-or-later
"""The host_program module in a scratch root: what it writes, leaves, removes and runs.

systemd-analyze runs for real (calendars, unit verification); systemctl is a recorded stand-in, since these tests
run outside a booted systemd (the molecule scenarios memory_alerts and restart_timer run it for real).
"""

import os
import stat
import subprocess

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.modules import host_program as hp

SERVICE = """[Unit]
Description=test program

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 -I -B /usr/local/libexec/sentry-selfhosted-memory/sentry_memory_alerts.py
"""
TIMER = """[Unit]
Description=test timer

[Timer]
OnCalendar=minutely

[Install]
WantedBy=timers.target
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the installer makes root's files: run as root (CI does)")


class Systemd:
    """Real systemd-analyze; systemctl answers from ``enabled``/``active`` and records what it was asked."""

    def __init__(self, unit_dir):
        self.unit_dir = unit_dir
        self.enabled, self.active, self.calls = set(), set(), []

    def __call__(self, argv):
        if argv[0] == "systemd-analyze":
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr
        self.calls.append(argv[1:])
        verb, unit = argv[1], argv[-1]
        if verb in ("stop", "disable") and not os.path.exists(os.path.join(self.unit_dir, unit)):
            return 5, "", "Failed to stop %s: Unit %s not loaded." % (unit, unit)  # as systemd answers
        if verb == "is-enabled":
            return (0, "enabled\n", "") if unit in self.enabled else (1, "disabled\n", "")
        if verb == "is-active":
            return (0, "active\n", "") if unit in self.active else (3, "inactive\n", "")
        if verb == "enable":
            self.enabled.add(unit)
        if verb in ("start", "restart"):
            self.active.add(unit)
        if verb == "disable":
            self.enabled.discard(unit)
            self.active.discard(unit)
        return 0, "", ""

    def changing(self):
        return [call for call in self.calls if call[0] not in ("is-enabled", "is-active")]


def params(**given):
    base = dict(name="sentry-memory-alerts", program="sentry_memory_alerts.py", state="present",
                source="print('alerts')\n", config='{"a": 1}\n',
                units={"sentry-memory-alerts.service": SERVICE, "sentry-memory-alerts.timer": TIMER},
                calendars=["minutely"], secrets={}, data_dirs=[], files=[])
    base.update(given)
    return base


@pytest.fixture
def host(tmp_path):
    layout = hp.Layout(str(tmp_path))
    systemd = Systemd(layout.units)
    os.makedirs(layout.units)

    def run(check_mode=False, **given):
        installer = hp.HostProgram(params(**given), systemd, layout)
        if given.get("state", "present") == "present":
            installer.plan_present()
        else:
            installer.plan_absent()
        if not check_mode:
            installer.apply()
        return installer.result(), installer

    run.layout, run.systemd, run.root = layout, systemd, tmp_path
    return run


def tree(root):
    """Every path below ``root`` with its mode and content: what a check run must leave as it was."""
    found = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(info.st_mode) else None
            found[path] = (stat.S_IMODE(info.st_mode), content)
    return found


def test_a_first_install_writes_everything_root_alone_and_starts_the_timer(host):
    result, dummy = host()
    lay = host.layout
    assert result["changed"] is True
    assert sorted(os.listdir(lay.libexec)) == sorted(["sentry_memory_alerts.py"] + list(hp.MODULE_UTILS))
    for name in os.listdir(lay.libexec):
        info = os.stat(os.path.join(lay.libexec, name))
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o644, 0)
    config = os.path.join(lay.etc, "sentry-memory-alerts.json")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600 and open(config).read() == '{"a": 1}\n'
    assert stat.S_IMODE(os.stat(lay.libexec).st_mode) == 0o755
    # The module_utils are the collection's own files, byte for byte.
    here = os.path.dirname(hp.__file__)
    for name in hp.MODULE_UTILS:
        with open(os.path.join(here, "..", "module_utils", name), "rb") as ours:
            assert open(os.path.join(lay.libexec, name), "rb").read() == ours.read()
    assert ["daemon-reload"] in host.systemd.calls
    assert ["enable", "sentry-memory-alerts.timer"] in host.systemd.calls
    assert ["start", "sentry-memory-alerts.timer"] in host.systemd.calls
    assert result["changes"] == [
        "sentry-memory-alerts: wrote the program, 4 module_utils, the configuration and the units",
        "made %s, %s, %s" % (lay.libexec, lay.etc, lay.state),
        "sentry-memory-alerts.timer: enabled and started"]


def test_a_second_run_changes_nothing_and_verifies_nothing(host):
    host()
    host.systemd.calls[:] = []
    result, installer = host()
    assert result["changed"] is False and result["changes"] == [] and result["written"] == []
    assert host.systemd.changing() == [] and installer.diffs[1:] == []


def test_check_mode_leaves_the_host_as_it_was_and_says_what_would_change(host):
    host()
    before = tree(host.root)
    host.systemd.calls[:] = []
    result, installer = host(check_mode=True, config='{"a": 2}\n', source="print('new')\n")
    assert tree(host.root) == before and host.systemd.changing() == []
    assert result["changed"] is True
    assert result["changes"] == ["sentry-memory-alerts: wrote the program and the configuration"]
    listing, config_diff = installer.diffs
    # The program is one line with its checksum; the configuration a line diff headed by its real path.
    assert "sentry_memory_alerts.py 0644 sha256:" in listing["after"] and "print(" not in listing["after"]
    assert config_diff["before_header"].endswith("/etc/sentry-selfhosted-memory/sentry-memory-alerts.json")
    assert (config_diff["before"], config_diff["after"]) == ('{"a": 1}\n', '{"a": 2}\n')


def test_only_a_changed_unit_is_verified_and_restarts_the_timer(host):
    host()
    host.systemd.calls[:] = []
    result, dummy = host(config='{"a": 3}\n')
    assert result["changed"] and host.systemd.changing() == []
    changed_timer = TIMER.replace("minutely", "hourly")
    host.systemd.calls[:] = []
    result, dummy = host(units={"sentry-memory-alerts.service": SERVICE, "sentry-memory-alerts.timer": changed_timer},
                         calendars=["hourly"])
    assert host.systemd.changing() == [["daemon-reload"], ["restart", "sentry-memory-alerts.timer"]]


def test_a_bad_calendar_or_unit_stops_before_anything_is_written(host):
    before = tree(host.root)
    with pytest.raises(hp.InstallError, match="'every tuesday' is not a systemd calendar expression"):
        host(calendars=["every tuesday"])
    broken = SERVICE.replace("ExecStart=/usr/bin/python3", "ExecStart=relative/python3")
    with pytest.raises(hp.InstallError, match="systemd-analyze verify refuses the units of sentry-memory-alerts"):
        host(units={"sentry-memory-alerts.service": broken, "sentry-memory-alerts.timer": TIMER})
    assert tree(host.root) == before


def test_the_program_directory_keeps_only_the_collections_files_root_alone(host):
    host()
    lay = host.layout
    other = os.path.join(lay.libexec, "sentry_relay_restart.py")
    with open(other, "w") as handle:  # the other host program, root's: it stays
        handle.write("print('restart')\n")
    os.chmod(other, 0o644)
    for name, mode in (("json.py", 0o644), ("host_program.py", 0o664), ("sentry_compose.py", 0o644)):
        path = os.path.join(lay.libexec, name)
        with open(path, "a") as handle:
            handle.write("# changed\n")
        os.chmod(path, mode)
    os.chown(os.path.join(lay.libexec, "sentry_compose.py"), 1000, 1000)
    os.mkdir(os.path.join(lay.libexec, "__pycache__"))
    os.symlink("/tmp", os.path.join(lay.libexec, "host_memory.py.link"))
    result, dummy = host()
    wanted = ["sentry_memory_alerts.py", "sentry_relay_restart.py"] + list(hp.MODULE_UTILS)
    assert sorted(os.listdir(lay.libexec)) == sorted(wanted)
    assert sorted(os.path.basename(path) for path in result["removed"]) == ["__pycache__", "host_memory.py.link", "json.py"]
    for name in ("host_program.py", "sentry_compose.py"):
        info = os.stat(os.path.join(lay.libexec, name))
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o644, 0) and b"# changed" not in open(
            os.path.join(lay.libexec, name), "rb").read()


def test_a_symlinked_program_directory_is_refused(host, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.makedirs(os.path.dirname(host.layout.libexec))
    os.symlink(str(target), host.layout.libexec)
    with pytest.raises(hp.InstallError, match="is a symlink .* root's programs are not installed through it"):
        host()
    assert os.listdir(str(target)) == []


def test_secrets_are_root_alone_never_listed_and_removed_when_empty(host):
    secret = str(host.root / "etc-secret-url")
    result, installer = host(secrets={secret: "https://hooks.example/T0K3N"})
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and open(secret).read() == "https://hooks.example/T0K3N\n"
    assert "T0K3N" not in repr(installer.diffs) and "(secret)" in installer.diffs[0]["after"]
    assert result["changes"][0].endswith("and a secret")
    result, installer = host(secrets={secret: ""})
    assert not os.path.exists(secret) and result["removed"] == [secret]


def test_a_data_directory_is_made_when_missing_and_left_alone_when_present(host):
    data = str(host.root / "node-exporter")
    host(data_dirs=[data])
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o755
    os.chmod(data, 0o775)
    result, dummy = host(data_dirs=[data])
    assert result["changed"] is False and stat.S_IMODE(os.stat(data).st_mode) == 0o775


def test_removal_stops_the_timer_and_the_last_program_takes_the_shared_files_with_it(host):
    host(secrets={str(host.root / "secret"): "x"})
    state_file = os.path.join(host.layout.state, "memory-alerts-state.json")
    with open(state_file, "w") as handle:
        handle.write("{}")
    host(name="sentry-relay-restart", program="sentry_relay_restart.py",
         units={"sentry-relay-restart.service": SERVICE, "sentry-relay-restart.timer": TIMER})
    host.systemd.calls[:] = []
    result, dummy = host(state="absent", files=[state_file], secrets={str(host.root / "secret"): ""})
    lay = host.layout
    # The timer and a run going on stop before their units go; then systemd forgets them.
    assert host.systemd.changing() == [["disable", "--now", "sentry-memory-alerts.timer"],
                                       ["stop", "sentry-memory-alerts.service"], ["daemon-reload"],
                                       ["reset-failed", "sentry-memory-alerts.service"]]
    assert "sentry-memory-alerts.timer: stopped and disabled" in result["changes"]
    assert not os.path.exists(state_file) and not os.path.exists(str(host.root / "secret"))
    # The other program still needs the shared module_utils and directories.
    assert sorted(os.listdir(lay.libexec)) == sorted(["sentry_relay_restart.py"] + list(hp.MODULE_UTILS))
    result, dummy = host(name="sentry-relay-restart", program="sentry_relay_restart.py", state="absent")
    assert not os.path.exists(lay.libexec) and not os.path.exists(lay.etc) and not os.path.exists(lay.state)
    result, dummy = host(name="sentry-relay-restart", program="sentry_relay_restart.py", state="absent")
    assert result["changed"] is False


def test_units_must_be_the_service_and_the_timer_of_the_name(host):
    with pytest.raises(hp.InstallError, match="units must be exactly sentry-memory-alerts.service and"):
        host(units={"other.service": SERVICE})
