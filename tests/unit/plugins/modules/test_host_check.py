# SPDX-License-Identifier: GPL-3.0-or-later
"""The host_check module: what a host lacks, read on this machine with temporary trees and programs (no double)."""

import os
import platform
import shutil
import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.sentry_selfhosted.memory.plugins.modules import host_check

from checkouts import minimal_checkout
from fakes import ModuleExit, raise_module_exits


def run_module(monkeypatch, **args):
    raise_module_exits(monkeypatch)
    with patch_module_args(args):
        with pytest.raises(ModuleExit) as exited:
            host_check.main()
    assert exited.value.kind == "exit", exited.value.result
    return exited.value.result


def test_a_checkout_lacks_nothing_and_the_python_is_this_one(monkeypatch, tmp_path):
    checkout = minimal_checkout(tmp_path / "sentry")
    result = run_module(monkeypatch, project_dir=str(checkout), docker=sys.executable)
    assert result["changed"] is False
    assert result["checkout_missing"] == []
    assert result["python"] == {"version": platform.python_version(), "executable": sys.executable}
    assert result["docker_path"] == sys.executable
    assert result["systemd"] is os.path.isdir("/run/systemd/system")
    assert result["calendars_refused"] == []


def test_each_missing_file_of_the_checkout_is_named(monkeypatch, tmp_path):
    checkout = minimal_checkout(tmp_path / "sentry")
    (checkout / ".env").unlink()
    assert run_module(monkeypatch, project_dir=str(checkout))["checkout_missing"] == [".env"]
    result = run_module(monkeypatch, project_dir=str(tmp_path / "nowhere"))
    assert result["checkout_missing"] == ["docker-compose.yml", ".env", "relay"]


def test_a_docker_cli_not_on_the_path_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_module(monkeypatch, project_dir=str(tmp_path), docker="docker-not-here")["docker_path"] is None


def test_systemd_is_read_from_its_run_directory(monkeypatch, tmp_path):
    raise_module_exits(monkeypatch)
    with patch_module_args({"project_dir": str(tmp_path)}):
        module = basic.AnsibleModule(argument_spec=dict(project_dir=dict(type="path"), docker=dict(default="docker"),
                                                        calendars=dict(type="list", elements="str", default=[])))
    assert host_check.HostCheck(module, root=str(tmp_path)).run()["systemd"] is False
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    assert host_check.HostCheck(module, root=str(tmp_path)).run()["systemd"] is True


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (tests/run installs systemd)")
def test_calendars_systemd_analyze_refuses_are_named(monkeypatch, tmp_path):
    result = run_module(monkeypatch, project_dir=str(tmp_path), calendars=["*-*-* 04:30:00", "every day at 4", "daily"])
    assert result["calendars_refused"] == ["every day at 4"]


def test_without_systemd_analyze_no_calendar_is_refused(monkeypatch, tmp_path):
    # An empty PATH: get_bin_path also looks in /sbin, /usr/sbin and /usr/local/sbin, where systemd puts no systemd-analyze.
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_module(monkeypatch, project_dir=str(tmp_path), calendars=["every day at 4"])["calendars_refused"] == []
