# SPDX-License-Identifier: GPL-3.0-or-later
"""relay_config: the keys each Relay release reads, and the module, run as Ansible runs it (a subprocess with an
arguments file) against checkout trees in tmp_path. The edit itself is tested with module_utils/yaml_text.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.modules import relay_config as rc

from relay_files import FIXTURES, REPO, assert_managed_values, assert_only_managed_lines_differ, read

MODULE = os.path.join(REPO, "plugins", "modules", "relay_config.py")
COLLECTIONS_TREE = os.path.join(REPO, ".cache", "pytest-collections")

PARAMS = dict(
    max_memory_percent=0.95,
    max_memory_bytes=None,
    refresh_interval_ms=None,
    spool_path="/work/spool/envelopes.db",
    spool_max_disk_size=2147483648,
    spool_max_backpressure_memory_percent=0.8,
    spool_max_memory_size=67108864,
)


def settings_for(release, **overrides):
    params = dict(PARAMS, **overrides)
    return rc.wanted_settings(params, release)


# --- which keys a release gets ----------------------------------------------

@pytest.mark.parametrize("release, present, absent", [
    ((24, 8, 0), "spool.envelopes.max_memory_size", "spool.envelopes.max_backpressure_memory_percent"),
    ((24, 11, 1), "spool.envelopes.max_memory_size", "spool.envelopes.max_backpressure_memory_percent"),
    ((24, 11, 2), "spool.envelopes.max_backpressure_memory_percent", "spool.envelopes.max_memory_size"),
    ((26, 8, 0), "spool.envelopes.max_backpressure_memory_percent", "spool.envelopes.max_memory_size"),
    (None, "spool.envelopes.max_backpressure_memory_percent", "spool.envelopes.max_memory_size"),
])
def test_keys_follow_the_release(release, present, absent):
    schema, settings = settings_for(release)
    keys = dict(settings)
    assert present in keys and absent not in keys
    assert schema == ("legacy" if release and release < (24, 11, 2) else "current")
    assert keys["health.max_memory_percent"] == 0.95
    assert keys["spool.envelopes.path"] == "/work/spool/envelopes.db"


def test_optional_health_keys_and_no_spool():
    schema, settings = settings_for((26, 8, 0), max_memory_bytes=2 * 1024 ** 3, refresh_interval_ms=1000, spool_path=None)
    assert dict(settings) == {"health.max_memory_percent": 0.95,
                              "health.max_memory_bytes": 2 * 1024 ** 3,
                              "health.refresh_interval_ms": 1000}


# --- bad input --------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(max_memory_percent=0.0), "max_memory_percent must be in (0, 1]"),
    (dict(max_memory_percent=-0.5), "max_memory_percent must be in (0, 1]"),
    (dict(max_memory_percent=1.01), "max_memory_percent must be in (0, 1]"),
    (dict(max_memory_percent=95.0), "max_memory_percent must be in (0, 1]"),
    (dict(spool_max_backpressure_memory_percent=0.95), "must be below max_memory_percent"),
    (dict(spool_max_backpressure_memory_percent=0.99), "must be below max_memory_percent"),
    (dict(spool_max_backpressure_memory_percent=0.0), "spool_max_backpressure_memory_percent must be in (0, 1]"),
    (dict(spool_max_disk_size=0), "spool_max_disk_size must be a positive integer"),
    (dict(max_memory_bytes=-1), "max_memory_bytes must be a positive integer"),
    (dict(spool_path="spool/envelopes.db"), "absolute file path"),
    (dict(spool_path="/work/spool/"), "absolute file path"),
    (dict(spool_path="/work/spool\nhealth: x"), "absolute file path"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(rc.RelayConfigError, match=re.escape(message)):
        settings_for((26, 8, 0), **overrides)


def test_backpressure_is_checked_whatever_the_release():
    # A legacy release does not get the key, but a wrong pair is still a mistake worth stopping.
    with pytest.raises(rc.RelayConfigError, match="must be below"):
        settings_for((24, 8, 0), spool_max_backpressure_memory_percent=0.96)


# --- the module, run as Ansible runs it ---------------------------------------

def make_checkout(root, image="ghcr.io/getsentry/relay:26.8.0", config="operator-config.yml", example=True):
    os.makedirs(os.path.join(root, "relay"))
    with open(os.path.join(root, "docker-compose.yml"), "w") as handle:
        handle.write("services:\n  relay:\n    image: \"$RELAY_IMAGE\"\n")
    with open(os.path.join(root, ".env"), "w") as handle:
        handle.write("COMPOSE_PROJECT_NAME=sentry-self-hosted\nRELAY_IMAGE=%s\n" % image)
    if example:
        shutil.copy(os.path.join(FIXTURES, "operator-config.yml"), os.path.join(root, "relay", "config.example.yml"))
    if config:
        shutil.copy(os.path.join(FIXTURES, config), os.path.join(root, "relay", "config.yml"))
    return root


def run_module(tmp_path, args, check=False, diff=False, pythonpath=(), timeout=None):
    args = dict(args)
    args["_ansible_check_mode"] = check
    args["_ansible_diff"] = diff
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(pythonpath) + [COLLECTIONS_TREE])
    proc = subprocess.run([sys.executable, MODULE, str(args_file)], capture_output=True, text=True, env=env, check=False,
                          timeout=timeout)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module printed no JSON: %s %s" % (proc.stdout, proc.stderr))


def module_args(checkout, **overrides):
    args = dict(PARAMS, project_dir=str(checkout))
    args.update(overrides)
    return {k: v for k, v in args.items() if v is not None}


def snapshot(checkout):
    """Bytes, mode and mtime of every file under relay/ (a failed run must leave all of it)."""
    state = {}
    for name in sorted(os.listdir(os.path.join(checkout, "relay"))):
        path = os.path.join(checkout, "relay", name)
        st = os.stat(path)
        with open(path, "rb") as handle:
            state[name] = (handle.read(), st.st_mode, st.st_mtime_ns)
    return state


def test_module_edits_backs_up_and_is_idempotent(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    config = os.path.join(checkout, "relay", "config.yml")
    original = read(config)
    first = run_module(tmp_path, module_args(checkout))
    assert first["changed"] is True and not first.get("failed"), first
    assert first["release"] == "26.8.0" and first["schema"] == "current"
    assert first["created"] is False
    assert read(first["backup_file"]) == original
    assert_managed_values(read(config), rc.wanted_settings(PARAMS, (26, 8, 0))[1])
    assert_only_managed_lines_differ(original, read(config))
    state = snapshot(checkout)
    second = run_module(tmp_path, module_args(checkout))
    assert second["changed"] is False and second["changed_keys"] == []
    assert snapshot(checkout) == state, "a run with nothing to do touched relay/"


def test_module_check_mode_and_diff_write_nothing(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"), image="getsentry/relay:24.8.0")
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout), check=True, diff=True)
    assert result["changed"] is True and result["schema"] == "legacy"
    assert "spool.envelopes.max_memory_size" in result["changed_keys"]
    assert "max_memory_size: 67108864" in result["diff"]["after"]
    assert result["diff"]["before"] == state["config.yml"][0].decode()
    assert snapshot(checkout) == state


def test_module_creates_from_example(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"), config=None)
    result = run_module(tmp_path, module_args(checkout))
    assert result["changed"] is True and result["created"] is True and "backup_file" not in result
    config = os.path.join(checkout, "relay", "config.yml")
    assert os.stat(config).st_mode & 0o777 == 0o644
    example = read(os.path.join(checkout, "relay", "config.example.yml"))
    assert_only_managed_lines_differ(example, read(config))
    assert run_module(tmp_path, module_args(checkout))["changed"] is False


def test_module_env_custom_wins_and_unknown_release_warns(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"), image="getsentry/relay:24.8.0")
    with open(os.path.join(checkout, ".env.custom"), "w") as handle:
        handle.write("RELAY_IMAGE=getsentry/relay:nightly\n")
    result = run_module(tmp_path, module_args(checkout), check=True)
    assert result["release"] is None and result["schema"] == "current"
    # ansible-core 2.19 returns warnings as structured events: look into their text.
    assert "the Relay release is unknown" in json.dumps(result.get("warnings", []))


@pytest.mark.parametrize("config, overrides, message", [
    ("invalid-yaml.txt", {}, "is not valid YAML"),
    ("duplicate-health.txt", {}, "twice"),
    ("operator-config.yml", dict(max_memory_percent=1.5), "max_memory_percent must be in (0, 1]"),
    ("operator-config.yml", dict(spool_max_backpressure_memory_percent=0.95), "must be below max_memory_percent"),
])
def test_module_bad_input_leaves_the_file_untouched(tmp_path, config, overrides, message):
    checkout = make_checkout(str(tmp_path / "sentry"), config=config)
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout, **overrides))
    assert result.get("failed") is True and message in result["msg"], result
    assert snapshot(checkout) == state


def test_module_missing_checkout(tmp_path):
    result = run_module(tmp_path, module_args(tmp_path / "nowhere"))
    assert result.get("failed") is True and "is not a self-hosted Sentry checkout" in result["msg"]


def test_module_missing_config_and_example(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"), config=None, example=False)
    result = run_module(tmp_path, module_args(checkout))
    assert result.get("failed") is True and "run the self-hosted installer first" in result["msg"]
    assert os.listdir(os.path.join(checkout, "relay")) == []


def test_module_without_pyyaml_fails_clearly(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    state = snapshot(checkout)
    blocker = tmp_path / "no-yaml"
    blocker.mkdir()
    (blocker / "yaml.py").write_text("raise ImportError('PyYAML is not installed here')\n")
    result = run_module(tmp_path, module_args(checkout), pythonpath=[str(blocker)])
    assert result.get("failed") is True and "python3-yaml" in result["msg"], result
    assert snapshot(checkout) == state


# --- files Relay's operators really have: encodings, typos, YAML tricks -------

def write_config(checkout, data):
    with open(os.path.join(checkout, "relay", "config.yml"), "wb") as handle:
        handle.write(data)


def test_module_names_file_and_line_of_a_latin1_byte(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    write_config(checkout, "relay:\n  host: 0.0.0.0\n# r\xe9glages du caf\xe9\nhealth:\n  max_memory_percent: 0.9\n".encode("latin-1"))
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout))
    path = os.path.join(checkout, "relay", "config.yml")
    assert result.get("failed") is True
    assert result["msg"].startswith("%s is not UTF-8 text: byte 0xe9 on line 3" % path), result["msg"]
    assert snapshot(checkout) == state


@pytest.mark.parametrize("line, shown", [
    ("max_memory_percent: abc", "health.max_memory_percent: abc (line 4), which Relay cannot read as a number"),
    ("max_memory_percent: true", "health.max_memory_percent: true (line 4), which Relay cannot read as a number"),
    ("max_memory_percent: '0.9'", "health.max_memory_percent: '0.9' (line 4), which Relay cannot read as a number"),
    ("max_memory_percent: [1]", "health.max_memory_percent set to a mapping or list (line 4), not a value"),
    ("max_memory_percent: {a: 1}", "health.max_memory_percent set to a mapping or list (line 4), not a value"),
])
def test_module_refuses_a_threshold_relay_cannot_read(tmp_path, line, shown):
    checkout = make_checkout(str(tmp_path / "sentry"))
    write_config(checkout, ("relay:\n  host: 0.0.0.0\nhealth:\n  %s\n" % line).encode())
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout))
    assert result.get("failed") is True and shown in result["msg"], result
    assert snapshot(checkout) == state


def test_module_refuses_a_spool_size_relay_cannot_read(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    write_config(checkout, b"spool:\n  envelopes:\n    max_disk_size: 2GB\n")
    result = run_module(tmp_path, module_args(checkout))
    assert result.get("failed") is True
    assert "spool.envelopes.max_disk_size: 2GB (line 3), which Relay cannot read as a number" in result["msg"]


LAUGHS = "".join(["relay:\n  host: 0.0.0.0\n", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
                 + ["%s: &%s [%s]\n" % (b, b, ", ".join(["*" + a] * 9)) for a, b in zip("abcdefgh", "bcdefghi")]
                 + ["health:\n  max_memory_percent: 0.9\n"])


def test_module_refuses_a_billion_laughs_file_quickly(tmp_path):
    """Under 1 KB that expands to 9**9 nodes: refused, not walked (a subprocess with a time bound)."""
    assert len(LAUGHS) < 1024
    checkout = make_checkout(str(tmp_path / "sentry"))
    write_config(checkout, LAUGHS.encode())
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout), check=True, diff=True, timeout=60)
    assert result.get("failed") is True
    assert "has YAML aliases that expand to more than 100000 nodes" in result["msg"], result
    assert snapshot(checkout) == state


@pytest.mark.parametrize("text, what, line", [
    ("defaults: &d {max_memory_percent: 0.9}\nhealth: *d\n", "the alias *d in health", 2),
    ("health: &h\n  max_memory_percent: 0.9\nother: *h\n", "the anchor &h in health", 1),
    ("defaults: &d {path: /x}\nspool:\n  envelopes:\n    <<: *d\n    max_disk_size: 1\n", "a merge key (<<) in spool", 4),
])
def test_module_refuses_anchors_aliases_and_merge_keys_in_managed_sections(tmp_path, text, what, line):
    checkout = make_checkout(str(tmp_path / "sentry"))
    write_config(checkout, text.encode())
    state = snapshot(checkout)
    result = run_module(tmp_path, module_args(checkout))
    assert result.get("failed") is True
    assert "uses %s (line %d): this module does not edit YAML anchors" % (what, line) in result["msg"], result
    assert snapshot(checkout) == state


def test_module_keeps_anchors_elsewhere(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    text = "x-common: &common {level: WARN}\nlogging: *common\nhealth:\n  max_memory_percent: 0.9\n"
    write_config(checkout, text.encode())
    result = run_module(tmp_path, module_args(checkout))
    assert result["changed"] is True and not result.get("failed"), result
    written = read(os.path.join(checkout, "relay", "config.yml"))
    assert written.startswith("x-common: &common {level: WARN}\nlogging: *common\nhealth:\n  max_memory_percent: 0.95\n")


def test_a_symlinked_config_is_edited_through_the_link_keeping_owner_and_mode(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    real = tmp_path / "kept" / "relay-config.yml"
    real.parent.mkdir()
    shutil.move(os.path.join(checkout, "relay", "config.yml"), str(real))
    os.symlink(str(real), os.path.join(checkout, "relay", "config.yml"))
    os.chown(str(real), 4321, 4321)
    os.chmod(str(real), 0o640)
    result = run_module(tmp_path, module_args(checkout, backup=False))
    assert result["changed"] and not result.get("failed"), result
    assert os.path.islink(os.path.join(checkout, "relay", "config.yml"))
    assert "max_memory_percent: 0.95" in real.read_text()
    info = os.stat(str(real))
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (4321, 4321, "0o640")
    assert sorted(p.name for p in real.parent.iterdir()) == ["relay-config.yml"]


def test_a_new_file_is_shown_against_the_example_it_is_made_from(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"), config=None)
    example = os.path.join(checkout, "relay", "config.example.yml")
    result = run_module(tmp_path, module_args(checkout), check=True, diff=True)
    assert result["created"] is True and result["diff"]["before"] == read(example)
    assert result["diff"]["before_header"] == "%s (relay/config.yml is made from it)" % example
    assert result["diff"]["after_header"] == os.path.join(checkout, "relay", "config.yml")
    assert result["changes"] == ["relay/config.yml (made from config.example.yml): " + ", ".join(
        "%s %s" % (key, result["settings"][key]) for key in result["changed_keys"])]
    assert not os.path.exists(os.path.join(checkout, "relay", "config.yml"))


def test_a_change_records_the_pending_restart_until_the_restart_clears_it(tmp_path):
    checkout = make_checkout(str(tmp_path / "sentry"))
    record = tmp_path / "state" / "relay-restart-pending.json"
    args = module_args(checkout, restart_record=str(record))

    checked = run_module(tmp_path, args, check=True)
    assert checked["restart_pending"] is True and not record.parent.exists()

    first = run_module(tmp_path, args)
    assert first["changed"] and first["restart_pending"] and first["changes"][0].startswith("relay/config.yml: ")
    assert json.loads(record.read_text()) == {"project_dir": checkout, "changed_keys": first["changed_keys"]}
    assert oct(record.stat().st_mode & 0o777) == "0o644" and oct(record.parent.stat().st_mode & 0o777) == "0o755"

    # Nothing to write, but the restart of the earlier run is still owed.
    second = run_module(tmp_path, args)
    assert second["changed"] is False and second["restart_pending"] is True and second["changes"] == []

    record.unlink()
    third = run_module(tmp_path, args)
    assert third["changed"] is False and third["restart_pending"] is False
    assert run_module(tmp_path, module_args(checkout))["restart_pending"] is False
