# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A file of the operator's that a module edits: read any bytes, write atomically, keep what makes it theirs.

Standard library only. The file is written through a symlink (the link
stays, its target is replaced), with the old mode, owner and group and the
old line endings, from a temporary file beside the target that is flushed
to disk before it is renamed over it; the temporary file never outlives a
failure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time

from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.host_program import replace_file


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

    def read(self):
        """The text ('' when there is none); bytes that are not UTF-8 survive a write unchanged."""
        if not self.exists():
            return ""
        with open(self.path, "rb") as handle:
            raw = handle.read()
        self.newline = "\r\n" if b"\r\n" in raw else "\n"
        return raw.decode("utf-8", "surrogateescape").replace("\r\n", "\n")

    def backup(self):
        """A timestamped copy beside the file (as Ansible's backup_local names it); its path."""
        copy = "%s.%s~" % (self.path, time.strftime("%Y-%m-%d@%H:%M:%S"))
        shutil.copy2(self.target, copy)
        return copy

    def write(self, text):
        """Replace the file's content with ``text``; mode, owner, line endings and symlinks are kept."""
        target = self.target
        old = os.stat(target) if os.path.exists(target) else None
        mode = old.st_mode & 0o7777 if old else self.default_mode
        replace_file(target, text.replace("\n", self.newline).encode("utf-8", "surrogateescape"), mode,
                     (old.st_uid, old.st_gid) if old else None)
