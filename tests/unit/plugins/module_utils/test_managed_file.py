# SPDX-License-Identifier: GPL-3.0-or-later
"""managed_file under faults: something else where the operator's file should be, a full disk during the backup or
the write. Each ends in a ManagedFileError naming the file, with the file as it was and nothing left beside it.

A full disk is simulated two ways: RLIMIT_FSIZE makes the kernel refuse the bytes past a size (EFBIG, a real short
write, which Python's ignored SIGXFSZ turns into an error), and ENOSPC raised where a file system with delayed
allocation reports it, at fsync.
"""

import errno
import os
import re
import resource
import stat
import threading
from contextlib import contextmanager

import pytest

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils import managed_file
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.managed_file import ManagedFile, ManagedFileError

REAL_FSYNC = os.fsync
OPERATOR = b"# the operator's\r\nservices:\r\n  web:\r\n    mem_limit: 4g\r\n" + b"#" * 4000 + b"\r\n"


def listing(directory):
    """Every name under ``directory`` with its bytes (None for what is not a regular file)."""
    found = {}
    for root, dirs, files in os.walk(str(directory)):
        for name in dirs + files:
            path = os.path.join(root, name)
            with_bytes = os.path.isfile(path) and not os.path.islink(path)
            found[os.path.relpath(path, str(directory))] = open(path, "rb").read() if with_bytes else None
    return found


@contextmanager
def disk_full_past(size):
    """Files of this process cannot grow past ``size`` bytes for the duration (restored even when the test fails)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def enospc_at_fsync(monkeypatch, calls=(1,)):
    """The ``calls``-th os.fsync calls (counted from 1) fail with ENOSPC, as delayed allocation reports a full disk."""
    count = [0]

    def fsync(fd):
        count[0] += 1
        if count[0] in calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return REAL_FSYNC(fd)
    monkeypatch.setattr(managed_file.os, "fsync", fsync)


@pytest.fixture
def override(tmp_path):
    path = tmp_path / "docker-compose.override.yml"
    path.write_bytes(OPERATOR)
    os.chmod(str(path), 0o640)
    os.utime(str(path), (1000000000, 1000000000))
    return path


@pytest.mark.parametrize("through_link", [False, True])
def test_a_directory_where_the_file_should_be_is_named_and_nothing_is_written(tmp_path, through_link):
    place = tmp_path / "docker-compose.override.yml"
    if through_link:
        (tmp_path / "elsewhere").mkdir()
        place.symlink_to(tmp_path / "elsewhere")
    else:
        place.mkdir()
    before = listing(tmp_path)
    managed = ManagedFile(str(place))
    for action in (managed.read, managed.backup, lambda: managed.write("services: {}\n")):
        with pytest.raises(ManagedFileError) as failed:
            action()
        assert "%s: it is a directory, not a regular file" % place in str(failed.value)
        assert failed.value.errno == errno.EISDIR and isinstance(failed.value, OSError)
    assert listing(tmp_path) == before


def test_a_named_pipe_is_refused_at_once_and_stays_a_pipe(tmp_path):
    pipe = tmp_path / "docker-compose.override.yml"
    os.mkfifo(str(pipe))
    outcome = []

    def read():
        try:
            outcome.append(ManagedFile(str(pipe)).read())
        except ManagedFileError as exc:
            outcome.append(exc)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():
        os.close(os.open(str(pipe), os.O_WRONLY))  # a writer that goes at once lets the blocked reader end
        reader.join(5)
        pytest.fail("read() waited for a writer on the named pipe instead of refusing it")
    assert len(outcome) == 1 and "%s: it is a named pipe, not a regular file" % pipe in str(outcome[0])
    with pytest.raises(ManagedFileError, match="it is a named pipe"):
        ManagedFile(str(pipe)).write("services: {}\n")
    assert stat.S_ISFIFO(os.lstat(str(pipe)).st_mode) and sorted(os.listdir(str(tmp_path))) == [pipe.name]


def test_a_backup_that_runs_out_of_room_leaves_no_partial_copy(tmp_path, override):
    managed = ManagedFile(str(override))
    with disk_full_past(len(OPERATOR) // 2):
        with pytest.raises(ManagedFileError) as failed:
            managed.backup()
    assert str(failed.value).startswith("cannot back up %s to %s." % (override, override))
    assert str(failed.value).endswith("File too large; %s was left as it was and no backup was kept" % override)
    assert listing(tmp_path) == {override.name: OPERATOR}
    # With room again the copy is whole, and keeps the file's mode and times as backup_local's does.
    copy = managed.backup()
    assert open(copy, "rb").read() == OPERATOR
    assert (stat.S_IMODE(os.stat(copy).st_mode), os.stat(copy).st_mtime) == (0o640, 1000000000)


def test_a_backup_whose_sync_finds_the_disk_full_is_not_kept(tmp_path, override, monkeypatch):
    enospc_at_fsync(monkeypatch)
    with pytest.raises(ManagedFileError, match="No space left on device; %s was left as it was and no backup was kept$"
                       % re.escape(str(override))):
        ManagedFile(str(override)).backup()
    assert listing(tmp_path) == {override.name: OPERATOR}


def test_a_write_that_runs_out_of_room_keeps_the_file_as_it_was(tmp_path, override):
    managed = ManagedFile(str(override))
    text = managed.read() + "#" * len(OPERATOR)
    with disk_full_past(len(OPERATOR)):
        with pytest.raises(ManagedFileError, match=r"^cannot write %s: File too large; the file was left as it was$" % re.escape(str(override))):
            managed.write(text)
    assert listing(tmp_path) == {override.name: OPERATOR}
    assert stat.S_IMODE(os.stat(str(override)).st_mode) == 0o640


def test_a_write_whose_sync_finds_the_disk_full_keeps_the_file_or_says_it_was_written(tmp_path, override, monkeypatch):
    managed = ManagedFile(str(override))
    text = managed.read().replace("4g", "2048m")
    enospc_at_fsync(monkeypatch, calls=(1,))
    with pytest.raises(ManagedFileError, match="^cannot write %s: No space left on device; the file was left as it was$"
                       % re.escape(str(override))):
        managed.write(text)
    assert listing(tmp_path) == {override.name: OPERATOR}
    # The directory's sync comes after the rename: the message must not claim the old file is still there.
    enospc_at_fsync(monkeypatch, calls=(2,))
    with pytest.raises(ManagedFileError, match="^%s was written, but syncing its directory to disk failed" % re.escape(str(override))):
        managed.write(text)
    assert listing(tmp_path) == {override.name: OPERATOR.replace(b"4g", b"2048m")}


def test_replace_file_leaves_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "metrics.prom"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(managed_file.os, "rename", refuse)
    with pytest.raises(OSError):
        managed_file.replace_file(str(target), b"new", 0o644)
    assert target.read_text() == "old"
    assert os.listdir(str(tmp_path)) == ["metrics.prom"]
