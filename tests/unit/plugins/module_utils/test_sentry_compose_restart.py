# SPDX-License-Identifier: GPL-3.0-or-later
"""The restart action of sentry_compose: plan, nginx reload decision, readiness wait, stand-aside, lock."""

import json
import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_compose as sc

from checkouts import minimal_checkout
from fakes import Clock

CONFIG_24 = {"services": {"nginx": {"depends_on": {"relay": {"condition": "service_started", "required": True}}},
                          "relay": {}, "web": {}}}
CONFIG_25 = {"services": {"nginx": {"depends_on": {"relay": {"condition": "service_started", "restart": True}}},
                          "relay": {}, "web": {}}}


class FakeDocker:
    """Answers compose calls like the docker CLI would; records each call's words after the global options."""

    def __init__(self, running=("relay", "nginx", "web"), config=None, fail=None):
        self.running = list(running)
        self.config = config if config is not None else CONFIG_24
        self.fail = fail
        self.calls = []

    def __call__(self, argv):
        words = argv[argv.index("--project-directory") + 2:] if "--project-directory" in argv else argv[1:]
        while words and words[0] in ("--env-file", "-f"):
            words = words[2:]
        self.calls.append(" ".join(words))
        if self.fail and self.fail(" ".join(words)):
            return 1, "", "boom"
        if words[:1] == ["ps"]:
            return 0, "\n".join(self.running) + "\n", ""
        if words[:1] == ["config"]:
            return 0, json.dumps(self.config), ""
        return 0, "", ""


@pytest.fixture
def checkout(tmp_path):
    return str(minimal_checkout(tmp_path / "sentry"))


def restarter(checkout, docker, release=(24, 8, 0), clock=None):
    clock = clock or Clock()
    return sc.RelayRestart(sc.SentryCompose(checkout, docker), release, sleep=clock.sleep, clock=clock)


def test_nginx_follows_relay_from_compose_config():
    assert not sc.nginx_follows_relay(CONFIG_24)
    assert sc.nginx_follows_relay(CONFIG_25)
    assert not sc.nginx_follows_relay({"services": {"nginx": {"depends_on": ["relay", "web"]}}})
    assert not sc.nginx_follows_relay({"services": {}})


@pytest.mark.parametrize("release, service, first", [
    ((24, 8, 0), "nginx", "wget"),
    ((25, 6, 0), "nginx", "wget"),
    ((25, 8, 0), "relay", "/bin/relay"),
    ((26, 8, 0), "relay", "/bin/relay"),
    (None, "nginx", "wget"),
])
def test_readiness_argv_per_release(release, service, first):
    got_service, argv = sc.readiness_argv(release)
    assert (got_service, argv[0]) == (service, first)
    if first == "/bin/relay":
        assert argv[1:] == ["healthcheck", "--mode", "ready"]
    else:
        assert sc.RELAY_READY_URL in argv


def test_plan_24_restarts_reloads_nginx_then_waits(checkout):
    docker = FakeDocker()
    rr = restarter(checkout, docker)
    steps = rr.plan(["relay"], rr.running_services())
    assert [rr.describe(s) for s in steps] == ["restart relay", "reload nginx", "wait for relay ready"]
    done, ready = rr.execute(steps, timeout=10)
    assert ready is True
    assert done == ["restart relay", "reload nginx", "wait for relay ready"]
    assert docker.calls[-3:] == ["restart relay", "exec -T nginx nginx -s reload",
                                 "exec -T nginx wget -q -O /dev/null -T 5 " + sc.RELAY_READY_URL]


def test_plan_25_leaves_nginx_to_compose(checkout):
    docker = FakeDocker(config=CONFIG_25)
    rr = restarter(checkout, docker, release=(26, 8, 0))
    steps = rr.plan(["relay"], rr.running_services())
    assert [rr.describe(s) for s in steps] == ["restart relay", "wait for relay ready"]
    rr.execute(steps, timeout=10)
    assert docker.calls[-1] == "exec -T relay /bin/relay healthcheck --mode ready"


def test_plan_without_reload_or_wait(checkout):
    rr = restarter(checkout, FakeDocker())
    assert rr.plan(["relay"], ["relay", "nginx"], reload_nginx=False, wait_ready=False) == [("restart", ["relay"])]


def test_plan_skips_stopped_services(checkout):
    rr = restarter(checkout, FakeDocker(running=["relay", "web"]))
    steps = rr.plan(["relay", "snuba-api"], rr.running_services())
    # nginx is not running: nothing to reload; snuba-api stopped: not started.
    assert steps == [("restart", ["relay"]), ("wait_ready", None)]


def test_plan_refuses_bad_service_names(checkout):
    rr = restarter(checkout, FakeDocker())
    with pytest.raises(sc.ComposeError, match="not a compose service name"):
        rr.plan(["relay; rm -rf /"], ["relay"])


def test_stand_aside_when_stack_is_down(checkout, tmp_path_factory):
    rr = restarter(checkout, FakeDocker(running=[]))
    empty_root = str(tmp_path_factory.mktemp("root"))
    reason = rr.stand_aside_reason(["relay"], rr.running_services(), root=empty_root)
    assert "none of relay is running" in reason
    assert rr.stand_aside_reason(["relay"], ["relay"], root=empty_root) is None


ME = os.getuid()


def fake_proc(root, pid, argv, cwd, uid=ME):
    directory = os.path.join(root, "proc", str(pid))
    os.makedirs(directory)
    with open(os.path.join(directory, "cmdline"), "wb") as handle:
        handle.write(b"\0".join(a.encode() for a in argv) + b"\0")
    with open(os.path.join(directory, "status"), "w") as handle:
        handle.write("Name:\tbash\nUid:\t%d\t%d\t%d\t%d\n" % (uid, uid, uid, uid))
    os.symlink(cwd, os.path.join(directory, "cwd"))


def test_installer_running_in_this_checkout(checkout, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("root"))
    other = str(tmp_path_factory.mktemp("other"))
    open(os.path.join(checkout, "install.sh"), "w").close()
    open(os.path.join(other, "install.sh"), "w").close()
    fake_proc(root, 10, ["bash", "./install.sh", "--skip-user-creation"], other)
    fake_proc(root, 11, ["sleep", "60"], checkout)
    assert sc.installer_running(checkout, root, trusted_uid=ME) is None
    fake_proc(root, 12, ["bash", "./install.sh"], checkout)
    assert sc.installer_running(checkout, root, trusted_uid=ME) == 12
    if ME == 0:
        rr = restarter(checkout, FakeDocker())
        assert "install.sh is running" in rr.stand_aside_reason(["relay"], ["relay"], root=root)


def test_installer_found_by_absolute_path(checkout, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("root"))
    open(os.path.join(checkout, "install.sh"), "w").close()
    fake_proc(root, 20, ["/bin/bash", os.path.join(checkout, "install.sh")], "/")
    assert sc.installer_running(checkout, root, trusted_uid=ME) == 20


def test_another_users_process_named_install_sh_is_not_trusted(checkout, tmp_path_factory):
    # `setpriv --reuid=nobody bash -c 'exec -a /opt/sentry/install.sh sleep 600'`: the same argv and
    # working directory an install has, but not root's: root's programs must not stand aside for it.
    root = str(tmp_path_factory.mktemp("root"))
    open(os.path.join(checkout, "install.sh"), "w").close()
    fake_proc(root, 30, [os.path.join(checkout, "install.sh"), "600"], checkout, uid=ME + 1)
    assert sc.installer_running(checkout, root, trusted_uid=ME) is None


def test_install_sh_that_does_not_exist_or_a_checkout_of_another_user_is_not_trusted(checkout, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("root"))
    fake_proc(root, 40, ["bash", "./install.sh"], checkout)
    assert sc.installer_running(checkout, root, trusted_uid=ME) is None  # no install.sh in the checkout
    open(os.path.join(checkout, "install.sh"), "w").close()
    # The process and the script would be trusted, the checkout is not the trusted user's.
    assert sc.installer_running(checkout, root, trusted_uid=ME + 1) is None


def test_wait_ready_retries_until_ready(checkout):
    clock = Clock()
    answers = iter([1, 1, 0])
    docker = FakeDocker(fail=lambda words: "wget" in words and next(answers) == 1)
    rr = restarter(checkout, docker, clock=clock)
    ready, attempts, detail = rr.wait_ready(timeout=30, interval=3)
    assert (ready, attempts) == (True, 3)
    assert clock.now == 6


def test_wait_ready_gives_up_at_the_timeout(checkout):
    clock = Clock()
    rr = restarter(checkout, FakeDocker(fail=lambda words: "wget" in words), clock=clock)
    ready, attempts, detail = rr.wait_ready(timeout=10, interval=3)
    assert ready is False
    assert clock.now == 10
    assert attempts == 5
    assert "boom" in detail


def test_execute_stops_when_restart_fails(checkout):
    docker = FakeDocker(fail=lambda words: words.startswith("restart"))
    rr = restarter(checkout, docker)
    with pytest.raises(sc.ComposeError, match="restart relay failed"):
        rr.execute(rr.plan(["relay"], rr.running_services()), timeout=10)
    assert not any(c.startswith("exec") for c in docker.calls)


def test_restart_lock_lives_in_a_private_directory(tmp_path):
    path = str(tmp_path / "run" / "restart.lock")
    lock = sc.RestartLock(path)
    assert lock.acquire()
    lock.release()
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_restart_lock_refuses_a_world_writable_directory_or_a_symlink(tmp_path):
    shared = tmp_path / "lock"
    shared.mkdir()
    shared.chmod(0o1777)  # as /run/lock is
    with pytest.raises(sc.UnsafePathError, match="writable by it alone"):
        sc.RestartLock(str(shared / "restart.lock")).acquire()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "restart.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(sc.UnsafePathError, match="cannot open the restart lock"):
        sc.RestartLock(str(private / "restart.lock")).acquire()
    assert not (tmp_path / "elsewhere").exists()


def test_restart_lock_is_exclusive(tmp_path):
    path = str(tmp_path / "restart.lock")
    first, second = sc.RestartLock(path), sc.RestartLock(path)
    assert first.acquire()
    clock = Clock()
    assert not second.acquire(wait=3, sleep=clock.sleep, clock=clock)
    assert clock.now == 3
    first.release()
    assert second.acquire()
    second.release()
