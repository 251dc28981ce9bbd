# SPDX-License-Identifier: GPL-3.0-or-later
"""The parser against what it does not control: docker inspect's JSON and operators' .env files.

A malformed docker inspect item gives a MemoryReadError naming the container
and the field, or a safe default where the field is optional, never a
traceback; a .env file reads as Compose v2 reads it (tests/integration/
test_env_files_cli.py checks the same cases against the real CLI).
"""

import copy
import json
import os

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import host_memory as hm
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck

HOSTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hosts")
# A host whose /proc/4242 is the relay container: a pid that reached /proc would be read.
ROOT = os.path.join(HOSTS, "v2-relay-limited")
CID = "c0ffee0123456789abcdef"
GOOD = {
    "Id": CID, "Name": "/sentry-self-hosted-relay-1", "State": {"Pid": 4242},
    "Config": {"Labels": {"com.docker.compose.service": "relay"}},
    "HostConfig": {"Memory": 2 * hm.GIB, "CgroupnsMode": "private"},
}
KEYS = {"id", "name", "service", "pid", "configured_limit", "cgroupns"}


def item_with(path, value):
    """GOOD with the field at ``path`` (its keys) set to ``value``, or removed when value is ``remove``."""
    item = copy.deepcopy(GOOD)
    parent = item
    for key in path[:-1]:
        parent = parent[key]
    if value == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return item


def docker_answering(*items):
    """A fake ``run``: docker ps lists the items, docker inspect answers with them."""
    def run(argv):
        if argv[1] == "ps":
            return 0, "".join(i["Id"] + "\n" for i in items), ""
        return 0, json.dumps(list(items)), ""
    return run


def listed(item):
    return ck.list_compose_containers(docker_answering(item), "sentry-self-hosted")


@pytest.mark.parametrize("path, value", [
    (("State",), None),
    (("State",), "remove"),
    (("State",), [{"Pid": 4242}]),
    (("Config",), None),
    (("Config",), "relay"),
    (("Name",), None),
    (("Name",), "remove"),
    (("Name",), 7),
])
def test_a_missing_or_malformed_required_field_is_a_clear_error(path, value):
    field = ".".join(path)
    with pytest.raises(hm.MemoryReadError, match=r"docker inspect of container %s: %s is " % (CID[:12], field)):
        listed(item_with(path, value))


@pytest.mark.parametrize("path, value, key, default", [
    (("Config", "Labels"), ["com.docker.compose.service=relay"], "service", ""),
    (("Config", "Labels"), "com.docker.compose.service=relay", "service", ""),
    (("Config", "Labels", "com.docker.compose.service"), 5, "service", ""),
    (("HostConfig",), ["Memory"], "configured_limit", None),
    (("HostConfig",), "private", "cgroupns", ""),
    (("HostConfig", "Memory"), "2g", "configured_limit", None),
    (("HostConfig", "Memory"), 2147483648.0, "configured_limit", None),
    (("HostConfig", "Memory"), True, "configured_limit", None),
    (("HostConfig", "Memory"), -1, "configured_limit", None),
    (("HostConfig", "CgroupnsMode"), None, "cgroupns", ""),
    (("HostConfig", "CgroupnsMode"), 5, "cgroupns", ""),
])
def test_a_malformed_optional_field_takes_its_safe_default(path, value, key, default):
    found = listed(item_with(path, value))
    assert len(found) == 1 and set(found[0]) == KEYS
    assert found[0][key] == default
    # The rest of the container is read as ever.
    assert (found[0]["id"], found[0]["name"], found[0]["pid"]) == (CID, "sentry-self-hosted-relay-1", 4242)


@pytest.mark.parametrize("pid", ["4242", "x", True, 0, -4242, 4242.0, None, {"Pid": 4242}])
def test_a_pid_that_is_not_a_process_id_never_reaches_proc(pid):
    """/proc/4242 exists in the fixture: a Pid read as a path (or a "4242" coerced) would give figures."""
    found = listed(item_with(("State", "Pid"), pid))
    assert set(found[0]) == KEYS and found[0]["pid"] is None
    ck.container_memory(found, "v2", ROOT)
    assert "no process id (State.Pid)" in found[0]["error"]
    assert "anon" not in found[0] and "use" not in found[0]


def test_container_memory_refuses_a_pid_given_by_another_caller():
    containers = [{"id": "x", "name": "web", "service": "web", "pid": "4242"}, {"id": "y", "service": "relay", "pid": 4242}]
    ck.container_memory(containers, "v2", ROOT)
    assert "no process id" in containers[0]["error"] and "anon" not in containers[0]
    assert "error" not in containers[1] and containers[1]["anon"] == 1468006400


def test_relay_figure_notes_a_malformed_item_instead_of_raising(tmp_path):
    figure = ck.relay_figure(str(tmp_path), ROOT, docker_answering(item_with(("State",), None)))
    assert not figure["containers_listed"] and figure["containers"] == []
    assert figure["notes"][-1] == ("containers were not listed: docker inspect of container %s: State is null, "
                                   "not a mapping" % CID[:12])


def test_relay_figure_passes_over_a_relay_without_a_process(tmp_path):
    """The relay container's figures are not read from /proc/4242 by a Pid of "4242": the host's stand in."""
    figure = ck.relay_figure(str(tmp_path), ROOT, docker_answering(item_with(("State", "Pid"), "4242")))
    assert figure["containers_listed"]
    assert "sentry-self-hosted-relay-1: no process to read its memory from" in " ".join(figure["notes"])
    assert figure["relay"]["source"].startswith("its own cgroup (relay container not found")


# --- .env files ------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # A byte-order mark an editor wrote is not the first key's.
    (u"\ufeffCOMPOSE_PROJECT_NAME=sentry-bom\n", {"COMPOSE_PROJECT_NAME": "sentry-bom"}),
    (u"export RELAY_IMAGE=getsentry/relay:24.8.0\n", {"RELAY_IMAGE": "getsentry/relay:24.8.0"}),
    (u"  export   A  =   spaced value   # comment\n", {"A": "spaced value"}),
    (u"A=value # comment\n", {"A": "value"}),
    # Only " #" starts a comment: a "#" after no blank, or after a tab, is the value's.
    (u"A=val#ue # comment\nB=value\t#kept # comment\n", {"A": "val#ue", "B": "value\t#kept"}),
    (u"A='a \\n \"b\" # c' # comment\n", {"A": u'a \\n "b" # c'}),
    (u"A='it\\'s'\n", {"A": "it's"}),
    (u'A="a\\nb \\"c\\" d\\\\e" # comment\n', {"A": u'a\nb "c" d\\e'}),
    (u'A="a # b"\nB="ends\\\\"\n', {"A": "a # b", "B": "ends\\"}),
    (u'A="\\t\\x\\0101\\$"\n', {"A": u"\t\\xA$"}),
    (u'A=""  # empty\nB=\n', {"A": "", "B": ""}),
    # A quote that does not close on its line: Compose reads on into the next lines, this reader passes it over.
    (u'A="open\nB=b\n', {"B": "b"}),
])
def test_env_file_reads_as_compose_does(tmp_path, text, expected):
    path = tmp_path / ".env"
    path.write_bytes(text.encode("utf-8"))
    notes = []
    assert ck.read_env_file(str(path), notes) == expected
    assert notes == []


def test_env_file_line_not_utf8_is_noted_and_read_as_compose_reads_it(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"A=caf\xe9 # comment\nB='ok'\n")
    notes = []
    assert ck.read_env_file(str(path), notes) == {"A": u"caf\ufffd", "B": "ok"}
    assert notes == ["%s line 1 is not UTF-8: read with the bad bytes replaced" % path]


def test_checkout_release_and_project_as_compose_reads_them(tmp_path):
    (tmp_path / ".env").write_text(u"\ufeffexport COMPOSE_PROJECT_NAME = sentry-two # the second stack\n"
                                   u'RELAY_IMAGE="getsentry/relay:24.8.0" # pinned\n', encoding="utf-8")
    (tmp_path / ".env.custom").write_text(u"RELAY_IMAGE='getsentry/relay:25.10.0' # upgraded\n")
    env = ck.checkout_env(str(tmp_path))
    assert ck.compose_project_name(env) == "sentry-two"
    assert env["RELAY_IMAGE"] == "getsentry/relay:25.10.0"
    assert ck.relay_release(env) == (25, 10, 0)
