# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's writing of files: replace_file, its one atomic write, and ManagedFile, a file of the operator's
that a module edits (read any bytes, write atomically, keep what makes it theirs).

Standard library only, without Ansible: the host_program module also copies
this file beside the host programs, whose host_program.py imports it. The file is written through a symlink (the link
stays, its target is replaced), with the old mode, owner and group and the
old line endings, from a temporary file beside the target that is flushed
to disk before it is renamed over it; the temporary file never outlives a
failure. A backup is written the same way, so a full disk leaves no half
copy. Every failure is a ManagedFileError that names the file and says
what was left as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat
import tempfile
import time


def replace_file(path, data, mode, owner=None):
    """Replace ``path`` with the bytes ``data``: staged beside it, flushed to disk, given ``mode`` (and ``owner``,
    a (uid, gid) pair) and renamed over it, then the directory synced. A reader never sees half a file and the
    staged file never outlives a failure. The one atomic write of the collection."""
    directory = os.path.dirname(path) or "."
    handle, staged = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staged, mode)
        if owner is not None and tuple(owner) != (os.getuid(), os.getgid()):
            os.chown(staged, owner[0], owner[1])
        os.rename(staged, path)
    except BaseException:
        if os.path.exists(staged):
            os.unlink(staged)
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ManagedFileError(OSError):
    """The file cannot be read, backed up or written; the message names it and says what was left as it was.

    An OSError (with the cause's errno), so callers that catch OSError keep working; a module turns it into fail_json.
    """

    def __init__(self, msg, code=None):
        super(ManagedFileError, self).__init__(msg)
        self.errno = code


def _reason(exc):
    # strerror without the file name: the name an OSError carries may be the staged file, gone by now.
    return getattr(exc, "strerror", None) or str(exc)


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def _check_regular(path, info, doing, left):
    """Refuse anything but a regular file: renaming over a FIFO or device would replace it, and reading one may block."""
    if not stat.S_ISREG(info.st_mode):
        raise ManagedFileError("cannot %s %s: it is %s, not a regular file; %s" % (doing, path, _kind(info.st_mode), left),
                               errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL)


class ManagedFile(object):
    """One file of the operator's: ``read()`` gives text with "\\n" line ends, ``write()`` puts it back as it was kept."""

    def __init__(self, path, default_mode=0o644):
        self.path = path
        self.default_mode = default_mode
        self.newline = "\n"

    @property
    def target(self):
        """What is written: the file itself, or the end of its chain of symlinks."""
        return os.path.realpath(self.path)

    def exists(self):
        return os.path.exists(self.path)

    def _bytes(self, doing, left):
        """The file's bytes, None when there is none. Opened without blocking and checked on the open descriptor, so a
        FIFO in the file's place is refused rather than waited on, and nothing can be swapped in between."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise ManagedFileError("cannot %s %s: %s; %s" % (doing, self.path, _reason(exc), left), exc.errno)
        try:
            _check_regular(self.path, os.fstat(fd), doing, left)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as handle:
            try:
                return handle.read()
            except (IOError, OSError) as exc:
                raise ManagedFileError("cannot %s %s: %s; %s" % (doing, self.path, _reason(exc), left), exc.errno)

    def read(self):
        """The text ('' when there is none); bytes that are not UTF-8 survive a write unchanged."""
        raw = self._bytes("read", "nothing was changed")
        if raw is None:
            return ""
        self.newline = "\r\n" if b"\r\n" in raw else "\n"
        return raw.decode("utf-8", "surrogateescape").replace("\r\n", "\n")

    def backup(self):
        """A timestamped copy beside the file (as Ansible's backup_local names it, with the file's mode, times and, as
        root, owner); its path. Written atomically: a failure leaves no copy, and the file as it was."""
        copy = "%s.%s~" % (self.path, time.strftime("%Y-%m-%d@%H:%M:%S"))
        left = "%s was left as it was and no backup was kept" % self.path
        raw = self._bytes("back up", left)
        if raw is None:
            raise ManagedFileError("cannot back up %s: there is no such file" % self.path, errno.ENOENT)
        existed = os.path.lexists(copy)
        try:
            info = os.stat(self.target)
            replace_file(copy, raw, stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid) if os.geteuid() == 0 else None)
            os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
        except (IOError, OSError) as exc:
            # Only syncing the directory or setting the times fails after the rename: a copy this call made goes too.
            if not existed and os.path.lexists(copy):
                os.unlink(copy)
            raise ManagedFileError("cannot back up %s to %s: %s; %s" % (self.path, copy, _reason(exc), left), exc.errno)
        return copy

    def write(self, text):
        """Replace the file's content with ``text``; mode, owner, line endings and symlinks are kept."""
        target = self.target
        try:
            old = os.stat(target)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise ManagedFileError("cannot write %s: %s; nothing was written" % (self.path, _reason(exc)), exc.errno)
            old = None
        if old is not None:
            _check_regular(self.path, old, "write", "nothing was written")
        mode = old.st_mode & 0o7777 if old else self.default_mode
        try:
            replace_file(target, text.replace("\n", self.newline).encode("utf-8", "surrogateescape"), mode,
                         (old.st_uid, old.st_gid) if old else None)
        except (IOError, OSError) as exc:
            if _replaced(target, old):
                raise ManagedFileError("%s was written, but syncing its directory to disk failed (%s): the new content may "
                                       "not survive a crash" % (self.path, _reason(exc)), exc.errno)
            raise ManagedFileError("cannot write %s: %s; %s" % (
                self.path, _reason(exc), "the file was left as it was" if old else "nothing was written"), exc.errno)


def _replaced(target, old):
    """Whether replace_file got as far as its rename before failing (after it, only the directory's sync can fail)."""
    try:
        now = os.stat(target)
    except OSError:
        return False
    return old is None or (now.st_dev, now.st_ino) != (old.st_dev, old.st_ino)
