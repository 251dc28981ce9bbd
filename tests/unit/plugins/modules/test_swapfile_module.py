# SPDX-License-Identifier: GPL-3.0-or-later
"""The module's side: options checked and converted before the manager runs, the diff rendered."""

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.modules import swapfile as module
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import swapfile as sw

GIB = 1024 ** 3


class Failed(Exception):
    pass


class FakeAnsibleModule:
    def __init__(self, **params):
        self.params = {
            "path": "/swapfile", "size": "8G", "state": "present", "priority": None, "fstab": True,
            "fstab_path": "/etc/fstab", "create_method": "auto", "min_free_disk": "1G", "force": False,
            "relay_threshold": 0.95, "swapoff_timeout": 600, "allow_in_container": False,
            "project_dir": "/opt/sentry", "swappiness": None, "vfs_cache_pressure": None, "sysctl_file": None,
            "sysctl_apply": True,
        }
        self.params.update(params)
        self.check_mode = False
        self.commands = []

    def fail_json(self, **kwargs):
        raise Failed(kwargs["msg"])

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/" + name

    def run_command(self, argv):
        self.commands.append(argv)
        return 0, "", ""


def test_sizes_are_converted():
    params = module.SwapfileModule(FakeAnsibleModule(size="512M", min_free_disk="2G")).params()
    assert params["size"] == 512 * 1024 ** 2 and params["min_free_disk"] == 2 * GIB


def test_auto_size_is_the_collections_rule(monkeypatch):
    monkeypatch.setattr(hm, "read_meminfo", lambda root="/": {"MemTotal": 24 * GIB, "MemFree": GIB})
    assert module.SwapfileModule(FakeAnsibleModule(size="auto")).params()["size"] == 12 * GIB
    monkeypatch.setattr(hm, "read_meminfo", lambda root="/": {"MemTotal": 64 * GIB, "MemFree": GIB})
    assert module.SwapfileModule(FakeAnsibleModule(size="auto")).params()["size"] == 16 * GIB


def test_size_is_required_for_present():
    with pytest.raises(Failed, match="size is required"):
        module.SwapfileModule(FakeAnsibleModule(size=None)).params()
    assert module.SwapfileModule(FakeAnsibleModule(size=None, state="absent")).params()["size"] is None


@pytest.mark.parametrize("override, message", [
    ({"priority": 40000}, "priority must be between"),
    ({"relay_threshold": 1.5}, "relay_threshold must be in"),
    ({"swapoff_timeout": 0}, "swapoff_timeout must be positive"),
    ({"size": "1000000"}, "multiple of the page size"),
    ({"swappiness": 201}, "swappiness must be between 0 and 200"),
    ({"vfs_cache_pressure": -1}, "vfs_cache_pressure must not be negative"),
])
def test_bad_options(override, message):
    with pytest.raises(sw.SwapfileError, match=message):
        module.SwapfileModule(FakeAnsibleModule(**override)).params()


def test_swapoff_is_bounded_by_timeout():
    fake = FakeAnsibleModule()
    module.SwapfileModule(fake).run(["/sbin/swapoff", "/swapfile"], timeout=30)
    module.SwapfileModule(fake).run(["/sbin/swapon", "/swapfile"])
    assert fake.commands == [["/usr/bin/timeout", "30", "/sbin/swapoff", "/swapfile"], ["/sbin/swapon", "/swapfile"]]


def test_render_diff():
    text = module.render({"size": 12 * 1024 ** 3, "active": True, "priority": -2, "fstab": ["/swapfile none swap sw 0 0"]})
    assert text == "size: 12.0 GiB\nactive: true\npriority: -2\nfstab: /swapfile none swap sw 0 0\n"
    assert "fstab" not in module.render({"size": 0, "active": False, "priority": None, "fstab": None})


def test_the_settings_file_gets_a_diff_of_its_own():
    state = {"size": 0, "active": False, "priority": None, "fstab": None}
    conf = "/etc/sysctl.d/60-sentry-selfhosted-swap.conf"
    shown = module.diffs("/swapfile", {"before": state, "after": dict(state, size=GIB, active=True),
                                       "sysctl_file": [None, "vm.swappiness=60\n"]}, conf)
    assert [d["before_header"] for d in shown] == ["/swapfile (before)", conf]
    assert shown[1]["before"] == "" and shown[1]["after"] == "vm.swappiness=60\n"
    assert len(module.diffs("/swapfile", {"before": state, "after": state, "sysctl_file": None}, None)) == 1
