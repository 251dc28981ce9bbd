# -*- coding: utf-8 -*-
# Copyright: sentry_selfhosted.memory contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one editor of an operator's YAML file as text: set keys, keep every other byte (comments, order,
layout, line endings).

The editor, YamlText, works on lines with the standard library alone (the
managed host has no ruamel.yaml, and a PyYAML round trip would lose the
operator's comments). Two styles:

- marked (docker-compose.override.yml): every line the collection writes
  ends with MARK; a line without it is the operator's, and is changed only
  when the caller adopts it. A service the collection alone writes is one
  line (a flow mapping); inside an entry of the operator's, each key is a line.
- unmarked (relay/config.yml, through set_scalars): the caller owns the keys
  it sets; a value changes in place (its comment stays), a missing key is
  written at the end of its section, also inside a one-line flow mapping.
  set_scalars needs PyYAML: it refuses what a reader would refuse or an edit
  could not keep apart (invalid YAML, duplicate keys, anchors, aliases or
  merge keys in the sections it edits, alias bombs) and proves the result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
import traceback

try:
    import yaml
except ImportError:
    yaml = None
    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    YAML_IMPORT_ERROR = None

MARK = "# sentry_selfhosted.memory"
KEY_LINE = re.compile(r"""^(?P<indent> *)(?P<q>["']?)(?P<key>[A-Za-z0-9_.<-]+)(?P=q) *:(?P<rest>(?: .*)?)$""")
ITEM_LINE = re.compile(r"""^(?P<indent> *)- +(?P<q>["']?)(?P<key>[A-Za-z0-9_]+)=""")
# Compose skips a UTF-8 byte-order mark; the editor sets it aside and writes it back.
BOM = u"\ufeff"

# Plain scalars Compose's YAML parser (go-yaml v3) reads as null, a boolean or a special float, not as a string.
_YAML_WORDS = frozenset(["", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
                         ".nan", ".NaN", ".NAN"] + [sign + inf for sign in ("", "+", "-") for inf in (".inf", ".Inf", ".INF")])
_YAML_INT = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)$")
_YAML_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_YAML_DATE = re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$")
# YAML 1.1 readers (PyYAML, yamllint, older tools) take these for booleans; written quoted so every reader agrees.
_YAML11_BOOLS = frozenset(["y", "n", "yes", "no", "on", "off"])
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ALIAS = re.compile(r"^\*([^\s,\[\]{}]+)$")
_NULLS = frozenset(["~", "null", "Null", "NULL"])
_FLOW_KEY = re.compile(r"""^\s*(?P<q>["']?)(?P<key>[A-Za-z0-9_.-]+)(?P=q)\s*:(?=\s|$)""")
# A document's aliases may not expand past this many nodes: a billion-laughs file of under 1 KB expands to billions,
# and every walk of it would run for minutes.
MAX_EXPANDED_NODES = 100000


class EditError(Exception):
    """The document cannot be edited safely as text; the message says why, and where."""


class OperatorValue(object):
    """A value on a line of the operator's own that the plan would change; ``via`` names the merge key that brings it."""

    def __init__(self, path, line, old, new, via=None):
        self.path, self.line, self.old, self.new, self.via = path, line, old, new, via

    def __str__(self):
        merged = "; %s" % self.via if self.via else ""
        return "%s at line %d (%s; planned %s%s)" % (".".join(self.path[1:]), self.line, self.old, self.new, merged)


def _plain_is_string(text):
    """Whether Compose's parser reads ``text``, written without quotes, as the string it spells.

    go-yaml v3 resolves a plain scalar that starts with a digit, a sign or a
    dot as a number or a date where it can (underscores ignored, 0x/0o/0b
    and leading-zero octals, 1e3), and a few words as null or booleans;
    Compose then refuses a service key that is not a string.
    """
    if text in _YAML_WORDS:
        return False
    if text[:1] not in "0123456789+-.":
        return True
    date = _YAML_DATE.match(text)
    if date:
        try:
            datetime.date(*[int(part) for part in date.groups()])
            return False
        except ValueError:
            pass  # no such day: go-yaml's time.Parse fails too, and the text stays a string
    digits = text.replace("_", "")
    return not (_YAML_INT.match(digits) or _YAML_FLOAT.match(digits))


def _yaml_key(name):
    """``name`` written as a key that every YAML reader takes for that same string: plain when it can be, else quoted."""
    if _PLAIN_KEY.match(name) and _plain_is_string(name) and name.lower() not in _YAML11_BOOLS:
        return name
    return json.dumps(name)  # a JSON string is a double-quoted YAML scalar


def _key_name(match):
    """The string Compose reads for the key of a KEY_LINE match; None when it reads a number, a boolean, null or a date."""
    key = match.group("key")
    return key if match.group("q") or _plain_is_string(key) else None


def _key_token(match):
    """The key as the line writes it, quotes included, to rewrite the line without changing what it names."""
    return "%s%s%s" % (match.group("q"), match.group("key"), match.group("q"))


def _is_merge(match):
    """A YAML merge key (``<<``); quoted, it is an ordinary key named "<<"."""
    return match.group("key") == "<<" and not match.group("q")


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
    if value.startswith(("'", '"')):
        quoted = re.match(r"""^(?:'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")(?=\s+#|$)""", value)
        return quoted.group(0) if quoted else value
    if " #" in value:
        value = value.split(" #", 1)[0].rstrip()
    return value


def _with_value(text, value):
    """The key line ``text`` with ``value`` (YAML text; None: nothing) in place of its value, spacing and comment kept."""
    match = KEY_LINE.match(text)
    rest = match.group("rest")
    stripped = rest.lstrip()
    tail = stripped[len(_inline_value(rest)):]
    if value is None:
        return text[:match.start("rest")] + tail.rstrip()
    if tail and not tail[0].isspace():
        tail = " " + tail
    return "%s%s%s%s" % (text[:match.start("rest")], rest[:len(rest) - len(stripped)] or " ", value, tail)


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
    value = _scalar(rest)
    if value.startswith("#"):
        return ""
    if value.startswith("&") and " " not in value:
        return ""  # an anchor on a block mapping
    return value


def _not_a_block(path, index, value):
    """The EditError for a key on the path whose value is not a block the editor can write into."""
    if value.startswith("*"):
        return EditError("%s at line %d is an alias (%s) of a mapping that may be shared; write it as a block of its own "
                         "to let the limits be merged" % (".".join(path), index + 1, value))
    return EditError("%s at line %d is written in flow style (%s); write it as a block to let the limits be merged"
                     % (".".join(path), index + 1, value))


def _flow_mapping(text, brace, where):
    """The items of the flow mapping whose "{" is ``text[brace]``, as [(key, value start, value end)], and the index of
    its "}"; EditError where it does not close on its line or holds anything but ``key: value`` items."""
    spans, depth, quote, escaped, item_start, previous, close = [], 0, None, False, brace + 1, "", None
    for index in range(brace, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif quote == '"' and char == "\\":
                escaped = True
            elif char == quote:
                quote, previous = None, char
            continue
        if char in "\"'" and previous in "{[,:":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                spans.append((item_start, index))
                close = index
                break
        elif char == "," and depth == 1:
            spans.append((item_start, index))
            item_start = index + 1
        elif char == "#" and text[index - 1] in " \t":
            break  # a comment inside the braces: the mapping goes on on the next line
        if not char.isspace():
            previous = char
    if close is None:
        raise EditError("%s is a flow mapping over several lines (%s); write it as a block or on one line"
                        % (where, text.strip()))
    items = []
    for start, end in spans:
        if not text[start:end].strip():
            continue  # {} or a trailing comma
        match = _FLOW_KEY.match(text[start:end])
        if not match:
            raise EditError("%s holds %s, which the editor does not read as a key: value pair; write it as a block"
                            % (where, text[start:end].strip()))
        value = text[start + match.end():end]
        value_start = start + match.end() + len(value) - len(value.lstrip())
        if match.group("key") in [item[0] for item in items]:
            raise EditError("%s has the key %s twice" % (where, match.group("key")))
        items.append((match.group("key"), value_start, value_start + len(value.strip())))
    return items, close


def _flow_nested(keys, value):
    """``value`` under ``keys`` as a flow value: ([a, b], 1) -> "{a: {b: 1}}"."""
    for key in reversed(keys):
        value = "{%s: %s}" % (_yaml_key(key), value)
    return value


class YamlText:
    """A YAML document as lines: sets keys (marked or not), follows merge keys, drops stale marked lines."""

    def __init__(self, text, adopt=False, marked=True):
        # A byte-order mark is no part of the first key: set aside here, written back by text().
        self.bom = text.startswith(BOM)
        text = text[len(BOM):] if self.bom else text
        # Lines are split at "\n" alone (not at the other breaks str.splitlines knows) and joined with the file's own.
        self.newline = "\r\n" if "\r\n" in text else "\n"
        text = text.replace("\r\n", "\n")
        self.trailing_newline = text.endswith("\n") or not text
        self.lines = [Line(t) for t in (text[:-1] if text.endswith("\n") else text).split("\n")] if text else []
        self.touched = set()
        self.unit = self._indent_unit()
        # Marked: the lines the editor writes end with MARK, and the others are the operator's. A differing value
        # on an operator's line is taken over only with adopt; else it is listed here.
        self.marked = marked
        self.adopt = adopt
        self.operator_values = []
        self.adopted = []

    def _ours(self, line):
        return self.marked and line.text.rstrip().endswith(MARK)

    def _claim(self, index, path, old, new, wanted):
        """Set line ``index`` to ``wanted`` unless it is the operator's and says something else.

        Unmarked, the caller owns the key: only the value changes, and the line keeps its comment."""
        line = self.lines[index]
        if not self.marked:
            if not _same_value(old, new):
                line.text = _with_value(line.text, new)
            return
        if not self._ours(line):
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
        body = (body + "\n" if body and self.trailing_newline else body).replace("\n", self.newline)
        return BOM + body if self.bom else body

    def _check_mapping(self):
        """EditError unless the document is a block mapping at the top level (or empty): a key written after a list, a
        scalar or a flow mapping would make it invalid."""
        for index, line in enumerate(self.lines):
            text = line.text.strip()
            if _content(text) and not text.startswith("%"):  # "%YAML 1.2": a directive
                if text.startswith(("-", "[", "{")) or ":" not in text or _indent(line.text):
                    raise EditError("is not a block mapping at the top level, unindented (line %d: %s)" % (index + 1, text))
                return

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

    def _find_key(self, start, end, key, where=None):
        """(index, match) of ``key`` among the block's own keys, as Compose reads them; (None, child indent) without it.

        Given ``where`` (the block's path), the editor is about to write there: a key the block has twice is an
        EditError, as it cannot tell which one a reader takes (Compose and Relay refuse such a file).
        """
        child_indent, children = self._children(start, end)
        found = [(index, match) for index, match in ((i, KEY_LINE.match(t)) for i, t in children)
                 if match and _key_name(match) == key]
        if where is not None and len(found) > 1:
            raise EditError("has the key %s twice (lines %s)"
                            % (".".join(list(where) + [key]), " and ".join(str(i + 1) for i, dummy in found[:2])))
        return found[0] if found else (None, child_indent)

    def _lookup(self, start, end, key, where, seen=()):
        """Where the block [start+1, end) gets ``key``: (index, match, merge), ``merge`` being the line of the merge key
        that brings it in (None for a key of the block's own); (None, child indent, None) where it has none.

        As YAML merges: a key of the block's own wins, then the first mapping
        the merge key lists. A merge key the editor cannot follow raises
        EditError, as the key may be behind it; ``where`` (the block's path)
        names it.
        """
        index, found = self._find_key(start, end, key, where)
        if index is not None:
            return index, found, None
        seen = seen + (start,)
        for merge in self._merge_keys(start, end):
            for anchor in self._merge_sources(merge, where, key, seen):
                got, match, _inner = self._lookup(anchor, self._block_end(anchor, _indent(self.lines[anchor].text)),
                                                  key, where, seen)
                if got is not None:
                    return got, match, merge
        return None, found, None

    def _merge_keys(self, start, end):
        """The lines of the block's merge keys (one in a file Compose reads)."""
        merges = []
        for index, text in self._children(start, end)[1]:
            match = KEY_LINE.match(text)
            if match and _is_merge(match):
                merges.append(index)
        return merges

    def _merge_sources(self, merge, where, key, seen):
        """The anchored block mappings the merge key at line ``merge`` brings in, first first; EditError when it cannot tell."""
        names = self._merge_aliases(merge)
        anchors = [self._anchor(name, merge) for name in names or []]
        if not anchors or None in anchors or set(anchors) & set(seen):
            owner = ".".join(where) or "the top level"
            raise EditError(
                "%s: the merge key at line %d (%s) may bring in %s, and the editor follows only aliases (*name) of block "
                "mappings anchored earlier in this file; write %s in %s itself, or the merged mapping as a block with an "
                "anchor" % (owner, merge + 1, self.lines[merge].text.strip(), key, key, owner))
        return anchors

    def _merge_aliases(self, merge):
        """The anchor names a merge key lists (``*a``, ``[*a, *b]`` or a block list of aliases); None for anything else."""
        value = _inline_value(KEY_LINE.match(self.lines[merge].text).group("rest"))
        if value.startswith("[") and value.endswith("]"):
            items = [item.strip() for item in value[1:-1].split(",")]
        elif value:
            items = [value]
        else:
            end = self._block_end(merge, _indent(self.lines[merge].text))
            items = [_scalar(text.strip()[2:]) if text.strip().startswith("- ") else text.strip()
                     for _index, text in self._children(merge, end)[1]]
        aliases = [_ALIAS.match(item) for item in items]
        return [alias.group(1) for alias in aliases] if aliases and all(aliases) else None

    def _anchor(self, name, before):
        """The line of the block mapping anchored ``&name`` that an alias on line ``before`` names (the latest
        definition before it, as YAML has it); None when that anchor is on anything else, or nowhere."""
        token = re.compile(r"(?:^|[\s\[{,])&%s(?=[\s,\]}]|$)" % re.escape(name))
        for index in range(before - 1, -1, -1):
            text = self.lines[index].text
            if not (_content(text) and token.search(text)):
                continue
            match = KEY_LINE.match(text)
            if not match or _scalar(match.group("rest")) != "&" + name:
                return None  # anchored on a flow value or a list item
            children = self._children(index, self._block_end(index, _indent(text)))[1]
            return index if children and not children[0][1].lstrip().startswith("-") else None
        return None

    def _resolve(self, index, keys, where):
        """The line of ``keys`` below the key on line ``index``, merge keys followed; None where one is missing."""
        for depth, key in enumerate(keys):
            match = KEY_LINE.match(self.lines[index].text)
            if _inline_value(match.group("rest")):
                return None  # a flow value or an alias: not followed
            end = self._block_end(index, len(match.group("indent")))
            index, _match, _merge = self._lookup(index, end, key, where + keys[:depth])
            if index is None:
                return None
        return index

    def _root(self):
        """A virtual parent covering the whole document: (start=-1, end, indent=-1)."""
        return -1, len(self.lines), -1

    def _insert(self, at, texts):
        new = [Line(t) for t in texts]
        self.lines[at:at] = new
        for line in new:
            self.touched.add(id(line))

    def find(self, path):
        """The line of the key at ``path``, or None; a key that a merge key brings in is found on its anchor's line."""
        start, end, indent = self._root()
        line = None
        for depth, key in enumerate(path):
            index, found, _merge = self._lookup(start, end, key, path[:depth])
            if index is None:
                return None
            line = self.lines[index]
            start, indent = index, len(found.group("indent"))
            end = self._block_end(start, indent)
        return line

    def set_value(self, path, value):
        """Set the scalar at ``path`` (keys from the top) to ``value`` (YAML text)."""
        self._check_mapping()
        start, end, indent = self._root()
        for depth, key in enumerate(path):
            leaf = depth == len(path) - 1
            index, found, merge = self._lookup(start, end, key, path[:depth])
            if merge is not None:
                self._set_merged(path, depth, (start, end), index, merge, value)
                return
            if index is None:
                child_indent = found if found is not None else (0 if indent < 0 else indent + self.unit)
                self._insert(end, self._new_lines(path[depth:], child_indent, value))
                return
            match = found
            line = self.lines[index]
            if leaf:
                self._claim(index, path, _scalar(match.group("rest")), value,
                            "%s%s: %s  %s" % (match.group("indent"), _key_token(match), value, MARK))
                return
            inline = _inline_value(match.group("rest"))
            if inline and not self.marked and inline.startswith("{"):
                self._set_in_flow(index, match, path, depth, value)
                return
            if inline and not self.marked and inline in _NULLS:
                line.text = _with_value(line.text, None)  # "spool: ~": nothing there yet, the keys go below
            elif inline:
                raise _not_a_block(path[:depth + 1], index, inline)
            self.touched.add(id(line))
            start, indent = index, len(match.group("indent"))
            end = self._block_end(start, indent)

    def _set_in_flow(self, index, match, path, depth, value):
        """Unmarked: set ``path`` below ``path[depth]``, whose value on line ``index`` is a one-line flow mapping; a
        missing key goes first inside the braces."""
        text = self.lines[index].text
        brace = text.index("{", match.start("rest"))
        for level in range(depth + 1, len(path)):
            where = "%s at line %d" % (".".join(path[:level]), index + 1)
            items, close = _flow_mapping(text, brace, where)
            found = [item for item in items if item[0] == path[level]]
            if not found:
                sep = ", " if text[brace + 1:close].strip() else ""
                text = "%s%s: %s%s%s" % (text[:brace + 1], _yaml_key(path[level]), _flow_nested(path[level + 1:], value),
                                         sep, text[brace + 1:])
                break
            dummy, start, end = found[0]
            old = text[start:end]
            if level == len(path) - 1:
                if not _same_value(old, value):
                    text = text[:start] + value + text[end:]
            elif old.startswith("{"):
                brace = start
                continue
            elif old in _NULLS:
                text = text[:start] + _flow_nested(path[level + 1:], value) + text[end:]
            else:
                raise EditError("%s.%s is %s, not a mapping" % (where, path[level], old))
            break
        self.lines[index].text = text

    def _new_lines(self, keys, child_indent, value):
        """Lines for ``keys`` that the file lacks, nested, the last set to ``value``; keys quoted where YAML reads them otherwise."""
        texts = []
        mark = "  " + MARK if self.marked else ""
        for offset, key in enumerate(keys):
            pad = " " * (child_indent + offset * self.unit)
            if offset == len(keys) - 1:
                texts.append("%s%s: %s%s" % (pad, _yaml_key(key), value, mark))
            else:
                texts.append("%s%s:%s" % (pad, _yaml_key(key), mark))
        return texts

    def _set_merged(self, path, depth, block, index, merge, value):
        """``path[depth]`` comes in through the merge key on line ``merge``: an operator's value, kept, adopted or refused.

        A merged scalar gives way to a key of the mapping's own, as YAML
        merges; adopting it writes that key into the mapping (``block``) and
        leaves the anchor, which other services may share, as it is. A merged
        mapping cannot take one more key without being replaced whole: unless
        it already says what the plan says, that is refused, adopt or not.
        """
        via = "merged by %s at line %d" % (self.lines[merge].text.strip(), merge + 1)
        leaf = self._resolve(index, path[depth + 1:], path[:depth + 1])
        old = _scalar(KEY_LINE.match(self.lines[leaf].text).group("rest")) if leaf is not None else None
        if old is not None and _same_value(old, value):
            return  # the operator's value already says it: left theirs
        if depth < len(path) - 1:
            raise EditError(
                "%s comes from the merge key at line %d (%s); the plan sets %s in it to %s (now %s), which cannot be "
                "written into a merged mapping without replacing all of it, adopt or not: write %s in %s itself"
                % (".".join(path[:depth + 1]), merge + 1, self.lines[merge].text.strip(), ".".join(path[depth + 1:]),
                   value, "unset" if old is None else old, path[depth], ".".join(path[:depth])))
        # A line the collection wrote (in a service that is itself an anchor) is not the operator's.
        if self.marked and not self._ours(self.lines[leaf]):
            conflict = OperatorValue(path, leaf + 1, old, value, via)
            if not self.adopt:
                self.operator_values.append(conflict)
                return
            self.adopted.append(conflict)
        start, end = block
        self._insert(end, self._new_lines(path[depth:], self._children(start, end)[0], value))

    def set_service(self, name, values):
        """Write service ``name`` as one line of the collection, ``name: {key: value, ...}  # mark``, where it can.

        ``values`` is an ordered list of (key, YAML text) whose text may be a
        flow mapping itself. Where the file already has the service in lines of
        the collection only (the one-line form, or the key-per-line form of
        earlier releases), they become this one line; operator's comments
        inside stay. Returns False, writing nothing, where the service has a
        line of the operator's (or comes through a merge key, or the services
        key is not a block): the caller then sets key by key inside it.
        """
        self._check_mapping()
        start, end, dummy = self._root()
        index, found = self._find_key(start, end, "services", ())
        if index is not None and (_inline_value(found.group("rest"))
                                  or self._merge_keys(index, self._block_end(index, len(found.group("indent"))))):
            return False
        if index is None:
            self._insert(end, ["services:  %s" % MARK])
            index = end
        self.touched.add(id(self.lines[index]))
        services_end = self._block_end(index, _indent(self.lines[index].text))
        child, match = self._find_key(index, services_end, name, ["services"])
        if child is None:
            pad = match if match is not None else _indent(self.lines[index].text) + self.unit
            self._insert(services_end, [self._flow_line(pad, name, values)])
            return True
        child_end = self._block_end(child, _indent(self.lines[child].text))
        block = [i for i in range(child, child_end) if _content(self.lines[i].text)]
        if not all(self._ours(self.lines[i]) for i in block):
            return False
        wanted = self._flow_line(_indent(self.lines[child].text), name, values)
        line = self.lines[child]
        line.text = wanted
        self.touched.add(id(line))
        for i in reversed(block[1:]):
            del self.lines[i]
        return True

    @staticmethod
    def _flow_line(pad, name, values):
        return "%s%s: {%s}  %s" % (" " * pad, _yaml_key(name), ", ".join("%s: %s" % (_yaml_key(k), v) for k, v in values), MARK)

    def set_env(self, service_path, name, value):
        """Set one environment variable of a service, in the style the block already uses."""
        self._check_mapping()
        start, end, indent = self._root()
        path = service_path + ["environment"]
        for depth, key in enumerate(path):
            index, found, merge = self._lookup(start, end, key, path[:depth])
            if index is None or merge is not None:
                # Absent, it is written as a mapping; merged, set_value keeps, adopts or refuses it.
                self.set_value(path + [name], json.dumps(value))
                return
            inline = _inline_value(found.group("rest"))
            if inline:
                raise _not_a_block(path[:depth + 1], index, inline)
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
            # A key Compose reads as a number, boolean or null is named as written (compose then says what is wrong).
            ours = all(t.endswith(MARK) for t in block)
            # A flow value of the collection's holds limits only; one of the operator's is left for compose to judge.
            flow = bool(_inline_value(match.group("rest"))) and not ours
            entries.append(dict(name=_key_name(match) or match.group("key"), line=child + 1,
                                ours=ours, managed=any(t.endswith(MARK) for t in block),
                                complete=bool(keys & set(["image", "build", "extends", "<<"])) or flow))
        return entries

    def drop_stale(self):
        """Remove managed lines this run did not set, once they hold no other line."""
        while True:
            for index in range(len(self.lines) - 1, -1, -1):
                line = self.lines[index]
                if id(line) in self.touched or not self._ours(line):
                    continue
                if self._block_end(index, _indent(line.text)) > index + 1:
                    continue  # the operator put something under it
                del self.lines[index]
                break
            else:
                return


# --- set_scalars: an unmarked edit, checked and proven with PyYAML -------------------------------------------------

def render_scalar(value):
    """A YAML scalar read back as the same value (JSON strings are YAML double-quoted scalars)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def same_scalar(current, want):
    """Whether the value read from the file is ``want``: numbers by value (0.950 is 0.95), anything else by type too."""
    if isinstance(want, float) and isinstance(current, (int, float)) and not isinstance(current, bool):
        return float(current) == want
    return type(current) is type(want) and current == want


def get_dotted(data, dotted):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def strip_dotted(data, dotted_keys):
    """A deep copy of data without the given dotted keys, and without mappings left empty by that."""
    def walk(node, path):
        if not isinstance(node, dict):
            return node
        result = {}
        for key, value in node.items():
            dotted = ".".join(path + [str(key)])
            if dotted in dotted_keys:
                continue
            value = walk(value, path + [str(key)])
            if (value is None or value == {}) and any(k.startswith(dotted + ".") for k in dotted_keys):
                continue
            result[key] = value
        return result
    return walk(data, [])


def _check_nodes(root):
    """EditError for a key twice in one mapping (anywhere, flow and lists too), or aliases that expand to more than
    MAX_EXPANDED_NODES nodes; counted without expanding them."""
    sizes, busy = {}, set()

    def size(node, path):
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise EditError("has a YAML alias that refers to itself")
        busy.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if name is not None and name in seen:
                    raise EditError("has the key %s twice (line %d)" % (".".join(path + [name]), key_node.start_mark.line + 1))
                seen.add(name)
                total += size(key_node, path) + size(value_node, path + [str(name)])
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item, path)
        busy.discard(key)
        sizes[key] = min(total, MAX_EXPANDED_NODES + 1)
        return sizes[key]
    if size(root, []) > MAX_EXPANDED_NODES:
        raise EditError("has YAML aliases that expand to more than %d nodes; refusing to read it" % MAX_EXPANDED_NODES)


def _check_anchors(text, root, sections):
    """EditError for an anchor, alias or merge key inside the top-level ``sections``: an edit there would also change,
    or be hidden behind, another part of the file."""
    spans = []
    # A section's text runs from its key to the next top-level key (its value node may be an alias of a node
    # defined elsewhere, so its own marks do not tell).
    keys = [key_node for key_node, dummy in root.value]
    for index, key_node in enumerate(keys):
        if isinstance(key_node, yaml.ScalarNode) and key_node.value in sections:
            end = keys[index + 1].start_mark.index if index + 1 < len(keys) else len(text)
            spans.append((key_node.value, key_node.start_mark.index, end))
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        what = None
        if isinstance(event, yaml.AliasEvent):
            what = "the alias *%s" % event.anchor
        elif getattr(event, "anchor", None):
            what = "the anchor &%s" % event.anchor
        elif isinstance(event, yaml.ScalarEvent) and event.value == "<<" and event.style is None:
            what = "a merge key (<<)"
        if what is None:
            continue
        for section, start, end in spans:
            if start <= event.start_mark.index < end:
                raise EditError("uses %s in %s (line %d): this module does not edit YAML anchors, aliases or merge keys "
                                "in the sections it manages; write %s out plainly"
                                % (what, section, event.start_mark.line + 1, section))


def _parsed(text, sections):
    """(root node, data) of a document checked before an edit of ``sections``: valid YAML, a mapping at the top level
    (or empty), no key twice, no anchors in the sections, no alias bomb; EditError otherwise."""
    try:
        # Composed and checked first: constructing a file whose aliases expand past the bound would take minutes.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return None, {}
        if not isinstance(root, yaml.MappingNode):
            raise EditError("is not a YAML mapping at the top level")
        _check_nodes(root)
        _check_anchors(text, root, sections)
        return root, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EditError("is not valid YAML: %s" % exc)


def _current(text, root, data, dotted, want, reader):
    """The value at ``dotted`` (None where unset), EditError where it is not a value of the kind ``reader`` reads."""
    node, value, path = root, data, []
    for part in dotted.split("."):
        if node is None or value is None:
            return None  # an empty document, or a section without keys yet
        if not isinstance(value, dict):
            raise EditError("has %s set to something that is not a mapping (line %d)"
                            % (".".join(path), node.start_mark.line + 1))
        path.append(part)
        found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
        if not found:
            return None
        node, value = found[0], value.get(part)
    if not isinstance(node, yaml.ScalarNode):
        raise EditError("has %s set to a mapping or list (line %d), not a value" % (dotted, node.start_mark.line + 1))
    number = isinstance(want, (int, float))
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float) if number else str)):
        raise EditError("has %s: %s (line %d), which %s cannot read as %s; correct or remove that line"
                        % (dotted, text[node.start_mark.index:node.end_mark.index].strip() or "(empty)",
                           node.start_mark.line + 1, reader,
                           "a number" if number else "a string"))
    return value


def set_scalars(text, settings, reader):
    """``text`` with the scalars of ``settings`` ([(dotted key, value)]) set unmarked, and the dotted keys that changed.

    Refused with EditError, before any edit: a document ``reader`` (the program that reads the file, for messages)
    would refuse or that the edit could not keep apart (see _parsed), a section on the way that is not a mapping, a
    current value of another kind than the one wanted. The result is proven before it is returned: it parses, every
    key has its wanted value, and everything else parses exactly as before. Needs PyYAML (``yaml`` is None without).
    """
    if yaml is None:
        raise EditError("cannot be checked without PyYAML (Debian/Ubuntu package python3-yaml); nothing was written")
    root, data = _parsed(text, set(key.split(".")[0] for key, dummy in settings))
    todo = [(key, want) for key, want in settings
            if not same_scalar(_current(text, root, data, key, want, reader), want)]
    if not todo:
        return text, []
    doc = YamlText(text, marked=False)
    for key, want in todo:
        doc.set_value(key.split("."), render_scalar(want))
    new_text = doc.text()
    try:
        new_data = yaml.safe_load(new_text) or {}
    except yaml.YAMLError as exc:
        raise EditError("would not be valid YAML after the edit (%s); nothing was written" % exc)
    for key, want in settings:
        if not same_scalar(get_dotted(new_data, key), want):
            raise EditError("edit of %s did not read back as %r; nothing was written" % (key, want))
    dotted = [key for key, dummy in settings]
    if strip_dotted(new_data, dotted) != strip_dotted(data or {}, dotted):
        raise EditError("the edit would change keys it does not manage; nothing was written")
    return new_text, [key for key, dummy in todo]
