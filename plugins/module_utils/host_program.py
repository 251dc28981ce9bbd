# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every program the collection runs on hosts needs: commands with a time limit, journal lines, a
configuration whose shape is checked, and atomic writes (managed_file's).

Standard library only, without Ansible: the host_program module copies this
file and managed_file.py beside the programs (sentry_relay_restart.py,
sentry_memory_alerts.py), which import it as ``host_program``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import subprocess
import sys

if __name__.startswith("ansible_collections."):
    from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import replace_file
else:
    # A copy beside the host programs, imported by its file name: so is the copy of managed_file beside it.
    from managed_file import replace_file  # pylint: disable=import-error

# syslog priorities, written as sd-daemon "<N>" prefixes that journald reads from a unit's stdout.
PRIORITY = {"critical": 2, "error": 3, "warning": 4, "ok": 5, "notice": 5, "info": 6}
# run_command's status when the command could not start, or did not end in time (as timeout(1) says).
NOT_RUN, TIMED_OUT = 127, 124


def run_command(argv, timeout=60):
    """Run an argv list (never a shell) for at most ``timeout`` seconds: (rc, stdout, stderr), as module.run_command gives.

    A command that cannot start (no docker CLI on a unit's PATH) or does not
    end in time is an answer with its reason in stderr, not an exception.
    """
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return TIMED_OUT, "", "%s did not end within %s s" % (" ".join(argv[:3]), timeout)
    except OSError as exc:
        return NOT_RUN, "", "cannot run %s: %s" % (argv[0], exc)
    return proc.returncode, proc.stdout, proc.stderr


class Journal:
    """One line per message: with a "<N>" priority prefix under systemd (JOURNAL_STREAM set), "level: text" otherwise."""

    def __init__(self, stream=None, systemd=None):
        self.stream = stream or sys.stdout
        self.systemd = bool(os.environ.get("JOURNAL_STREAM")) if systemd is None else systemd

    def log(self, level, text):
        line = "<%d>%s" % (PRIORITY[level], text) if self.systemd else "%s: %s" % (level, text)
        self.stream.write(line.replace("\n", " ") + "\n")
        self.stream.flush()


class ConfigError(Exception):
    """The configuration cannot be read, or a value has the wrong shape."""


# ansible-core before 2.19 writes a templated null into JSON as a string.
_NULLS = (None, "", "None", "null")


def _number(key, value):
    if isinstance(value, bool):
        raise ConfigError("%s must be a number, got %r" % (key, value))
    try:
        number = float(value)  # older ansible-core may write numbers as strings
    except (TypeError, ValueError):
        raise ConfigError("%s must be a number, got %r" % (key, value))
    return int(number) if number == int(number) else number


def checked(key, kind, value):
    """``value`` in the shape ``kind`` names, or ConfigError saying why not.

    Kinds: number (int when whole), count (a number, 0 or more), ratio (in
    (0, 1]), positive (a number above 0), bool, string (non-empty), strings (a
    list of strings), or a tuple of the strings allowed; a trailing "?" also
    allows null.
    """
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError("%s must be one of %s, got %r" % (key, ", ".join(kind), value))
        return value
    if kind.endswith("?"):
        if value in _NULLS:
            return None
        kind = kind[:-1]
    if kind in ("number", "count", "ratio", "positive"):
        number = _number(key, value)
        if kind == "ratio" and not 0 < number <= 1:
            raise ConfigError("%s must be in (0, 1], got %s" % (key, number))
        if kind == "positive" and number <= 0:
            raise ConfigError("%s must be positive, got %s" % (key, number))
        if kind == "count" and number < 0:
            raise ConfigError("%s must be 0 or more, got %s" % (key, number))
        return float(number) if kind == "ratio" else number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):  # older ansible-core writes templated booleans as strings
            return str(value).lower() == "true"
        raise ConfigError("%s must be true or false, got %r" % (key, value))
    if kind == "string":
        if not isinstance(value, str) or not value:
            raise ConfigError("%s must be a non-empty string, got %r" % (key, value))
        return value
    if kind == "strings":
        # A string would be taken letter by letter.
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError("%s must be a list of strings, got %r" % (key, value))
        return value
    raise ValueError("no shape %r" % (kind,))


def make_config(given, settings):
    """The defaults with ``given`` over them, every value checked against its shape.

    ``settings`` is a program's table {key: (shape, default)}. Keys that start
    with "_" are comments (JSON has none); any other key the table does not
    know is refused, as a misspelt setting would be ignored.
    """
    if not isinstance(given, dict):
        raise ConfigError("it must hold a JSON object, got %s" % type(given).__name__)
    given = dict((k, v) for k, v in given.items() if not k.startswith("_"))
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ConfigError("unknown configuration keys: %s" % ", ".join(unknown))
    return dict((key, checked(key, shape, given.get(key, default))) for key, (shape, default) in settings.items())


def read_json(path):
    """A JSON file's value; ConfigError when it cannot be read or parsed."""
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as exc:
        raise ConfigError("cannot read it: %s" % exc)


class UntrustedFileError(Exception):
    """A file root would decide from that another user could have written; ``problem`` says why ("a symlink")."""

    def __init__(self, path, problem):
        Exception.__init__(self, "%s is %s, not a regular file only uid %d may write" % (path, problem, os.geteuid()))
        self.problem = problem


def untrusted_because(info):
    """Why a file of this ``os.lstat`` result may hold another user's words, or None when only this user's can."""
    return ("a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file" if not stat.S_ISREG(info.st_mode)
            else "owned by uid %d" % info.st_uid if info.st_uid != os.geteuid()
            else "writable by others (mode %04o)" % stat.S_IMODE(info.st_mode) if info.st_mode & 0o022 else None)


def read_own_json(path):
    """The JSON value of a file only this process's user can have written, or None where there is no file.

    A symlink, anything but a regular file, a file of another user or one that
    group or others may write raises UntrustedFileError; a file that does not
    parse raises ValueError."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        if not os.path.lexists(path):
            return None
        raise UntrustedFileError(path, "not to be looked at (%s)" % exc)
    problem = untrusted_because(info)
    if problem:
        raise UntrustedFileError(path, problem)
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def write_atomic(path, text, mode=0o644):
    """Replace a file of the program's own (state, metrics) with ``text`` and ``mode``."""
    replace_file(path, text.encode("utf-8"), mode)
