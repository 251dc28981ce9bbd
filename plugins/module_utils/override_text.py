# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docker-compose.override.yml as text: set the collection's keys, keep every other byte, tell its lines from the operator's.

Standard library only (the managed host has no ruamel.yaml, and a PyYAML
round trip would lose the operator's comments). Every line the collection
writes ends with MARK; a line without it is the operator's, and is changed
only when the caller adopts it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

MARK = "# sentry_selfhosted.memory"
KEY_LINE = re.compile(r"""^(?P<indent> *)(?P<q>["']?)(?P<key>[A-Za-z0-9_.<-]+)(?P=q) *:(?P<rest>(?: .*)?)$""")
ITEM_LINE = re.compile(r"""^(?P<indent> *)- +(?P<q>["']?)(?P<key>[A-Za-z0-9_]+)=""")


class EditError(Exception):
    """The override cannot be merged safely as text."""


class OperatorValue(object):
    """A value on a line of the operator's own that the plan would change."""

    def __init__(self, path, line, old, new):
        self.path, self.line, self.old, self.new = path, line, old, new

    def __str__(self):
        return "%s at line %d (%s; planned %s)" % (".".join(self.path[1:]), self.line, self.old, self.new)


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([bkmg]?)b?$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _same_value(old, new):
    """Whether two YAML scalars mean the same: sizes by bytes (1g == 1024m), strings without their quotes."""
    old, new = old.strip().strip("\"'"), new.strip().strip("\"'")
    sizes = [_SIZE.match(v) for v in (old, new)]
    if all(sizes):
        return [float(m.group(1)) * _UNITS[m.group(2).lower()] for m in sizes][0] == \
            [float(m.group(1)) * _UNITS[m.group(2).lower()] for m in sizes][1]
    return old == new


def _scalar(rest):
    """The value of a ``key: value`` line without a trailing comment."""
    value = rest.strip()
    if " #" in value and not value.startswith(("'", '"')):
        value = value.split(" #", 1)[0].rstrip()
    return value


class Line:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _content(text):
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#") and stripped != "---"


def _indent(text):
    return len(text) - len(text.lstrip(" "))


def _inline_value(rest):
    """The value after ``key:`` without a trailing comment ('' for a block)."""
    value = rest.strip()
    if value.startswith("#"):
        return ""
    if value.startswith("&") and " " not in value:
        return ""  # an anchor on a block mapping
    return value


class OverrideText:
    """The override as lines; sets managed keys and drops stale managed lines."""

    def __init__(self, text, adopt=False):
        self.trailing_newline = text.endswith("\n") or not text
        self.lines = [Line(t) for t in text.splitlines()]
        self.touched = set()
        self.unit = self._indent_unit()
        # A differing value on an operator's line is taken over only with adopt; else it is listed here.
        self.adopt = adopt
        self.operator_values = []
        self.adopted = []

    def _claim(self, index, path, old, new, wanted):
        """Set line ``index`` to ``wanted`` unless it is the operator's and says something else."""
        line = self.lines[index]
        if not line.text.rstrip().endswith(MARK):
            if _same_value(old, new):
                return  # the operator's line already says it: left theirs, untouched
            conflict = OperatorValue(path, index + 1, old, new)
            if not self.adopt:
                self.operator_values.append(conflict)
                return
            self.adopted.append(conflict)
        line.text = wanted
        self.touched.add(id(line))

    def _indent_unit(self):
        for line in self.lines:
            if _content(line.text) and _indent(line.text) > 0:
                return _indent(line.text)
        return 2

    def text(self):
        body = "\n".join(line.text for line in self.lines)
        return body + "\n" if body and self.trailing_newline else body

    def _block_end(self, start, parent_indent):
        """Index after the last content line of the block under line ``start``.

        A sequence may sit at its key's own indent (``environment:`` then
        ``- A=1`` below it, unindented): such items belong to the block.
        """
        end = start + 1
        for index in range(start + 1, len(self.lines)):
            text = self.lines[index].text
            if not _content(text):
                continue
            same_level_item = _indent(text) == parent_indent and text.lstrip().startswith("- ")
            if _indent(text) <= parent_indent and not same_level_item:
                break
            end = index + 1
        return end

    def _children(self, start, end):
        """(index, match) of the direct children of the block [start+1, end)."""
        child_indent = None
        found = []
        for index in range(start + 1, end):
            text = self.lines[index].text
            if not _content(text):
                continue
            if child_indent is None:
                child_indent = _indent(text)
            if _indent(text) == child_indent:
                found.append((index, text))
        return child_indent, found

    def _find_key(self, start, end, key):
        child_indent, children = self._children(start, end)
        for index, text in children:
            match = KEY_LINE.match(text)
            if match and match.group("key") == key:
                return index, match
        return None, child_indent

    def _root(self):
        """A virtual parent covering the whole document: (start=-1, end, indent=-1)."""
        return -1, len(self.lines), -1

    def _insert(self, at, texts):
        new = [Line(t) for t in texts]
        self.lines[at:at] = new
        for line in new:
            self.touched.add(id(line))

    def find(self, path):
        """The line of the key at ``path``, or None."""
        start, end, indent = self._root()
        line = None
        for key in path:
            index, found = self._find_key(start, end, key)
            if index is None:
                return None
            line = self.lines[index]
            start, indent = index, len(found.group("indent"))
            end = self._block_end(start, indent)
        return line

    def set_value(self, path, value):
        """Set the scalar at ``path`` (keys from the top) to ``value`` (YAML text)."""
        start, end, indent = self._root()
        for depth, key in enumerate(path):
            leaf = depth == len(path) - 1
            index, found = self._find_key(start, end, key)
            if index is None:
                child_indent = found if found is not None else (0 if indent < 0 else indent + self.unit)
                texts = []
                for offset, rest_key in enumerate(path[depth:]):
                    pad = " " * (child_indent + offset * self.unit)
                    if offset == len(path) - depth - 1:
                        texts.append("%s%s: %s  %s" % (pad, rest_key, value, MARK))
                    else:
                        texts.append("%s%s:  %s" % (pad, rest_key, MARK))
                self._insert(end, texts)
                return
            match = found
            line = self.lines[index]
            if leaf:
                self._claim(index, path, _scalar(match.group("rest")), value,
                            "%s%s: %s  %s" % (match.group("indent"), key, value, MARK))
                return
            if _inline_value(match.group("rest")):
                raise EditError("%s at line %d is written in flow style (%s); write it as a block to let the limits be merged"
                                % (".".join(path[:depth + 1]), index + 1, line.text.strip()))
            self.touched.add(id(line))
            start, indent = index, len(match.group("indent"))
            end = self._block_end(start, indent)

    def set_env(self, service_path, name, value):
        """Set one environment variable of a service, in the style the block already uses."""
        start, end, indent = self._root()
        for key in service_path + ["environment"]:
            index, found = self._find_key(start, end, key)
            if index is None:
                self.set_value(service_path + ["environment", name], json.dumps(value))
                return
            if _inline_value(found.group("rest")):
                raise EditError("%s at line %d is written in flow style; write it as a block to let the limits be merged"
                                % (".".join(service_path + [key]), index + 1))
            start, indent = index, len(found.group("indent"))
            end = self._block_end(start, indent)
        child_indent, children = self._children(start, end)
        if not children or not children[0][1].lstrip().startswith("- "):
            self.set_value(service_path + ["environment", name], json.dumps(value))
            return
        wanted = "%s- %s  %s" % (" " * child_indent, json.dumps("%s=%s" % (name, value)), MARK)
        for index, text in children:
            match = ITEM_LINE.match(text)
            if match and match.group("key") == name:
                item = _scalar(text.lstrip()[1:]).strip("\"'")
                self._claim(index, service_path + ["environment", name], item.split("=", 1)[1], str(value), wanted)
                return
        self._insert(end, [wanted])
        self.touched.add(id(self.lines[start]))

    def service_entries(self):
        """The entries under the top-level ``services`` key.

        Each is a dict: name, line (1-based), ours (every content line carries
        the mark), managed (some line does) and complete (the entry defines a
        service by itself: image, build, extends or a merge key, or a flow value
        compose judges).
        """
        start, end, indent = self._root()
        index, found = self._find_key(start, end, "services")
        if index is None or _inline_value(found.group("rest")):
            return []
        entries = []
        for child, text in self._children(index, self._block_end(index, len(found.group("indent"))))[1]:
            match = KEY_LINE.match(text)
            if not match:
                continue
            block_end = self._block_end(child, _indent(text))
            block = [self.lines[i].text.rstrip() for i in range(child, block_end) if _content(self.lines[i].text)]
            keys = set()
            for child_text in [t for i, t in self._children(child, block_end)[1]]:
                key = KEY_LINE.match(child_text)
                if key:
                    keys.add(key.group("key"))
            entries.append(dict(name=match.group("key"), line=child + 1,
                                ours=all(t.endswith(MARK) for t in block), managed=any(t.endswith(MARK) for t in block),
                                complete=bool(keys & set(["image", "build", "extends", "<<"])) or bool(_inline_value(match.group("rest")))))
        return entries

    def drop_stale(self):
        """Remove managed lines this run did not set, once they hold no other line."""
        while True:
            for index in range(len(self.lines) - 1, -1, -1):
                line = self.lines[index]
                if id(line) in self.touched or not line.text.rstrip().endswith(MARK):
                    continue
                if self._block_end(index, _indent(line.text)) > index + 1:
                    continue  # the operator put something under it
                del self.lines[index]
                break
            else:
                return
