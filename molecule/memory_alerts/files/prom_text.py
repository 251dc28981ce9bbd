# SPDX-License-Identifier: GPL-3.0-or-later
"""A strict reader of the Prometheus text exposition format (0.0.4), for tests.

Prints the samples as JSON ({"name": [{"labels": {...}, "value": float}]}) or
exits 1 naming the first line that breaks the format: a bad metric or label
name, bad escaping, a value that is not a number, a TYPE after its samples or
given twice, a family split in two, a repeated series, no final newline.
"""

import json
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


class FormatError(Exception):
    pass


def parse_value(text):
    special = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}
    if text in special:
        return special[text]
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", text):
        raise FormatError("value %r is not a number" % text)
    return float(text)


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        match = re.compile(r"(%s)=\"((?:[^\"\\\n]|\\[\\\"n])*)\"" % LABEL).match(text, pos)
        if not match:
            raise FormatError("bad label at %r" % text[pos:])
        name = match.group(1)
        if name in labels:
            raise FormatError("label %s given twice" % name)
        value = match.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        labels[name] = value
        pos = match.end()
        if pos < len(text):
            if text[pos] != ",":
                raise FormatError("expected , at %r" % text[pos:])
            pos += 1
    return labels


def family_of(name, types):
    if name in types:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            return name[: -len(suffix)]
    return name


def parse(text):
    if text and not text.endswith("\n"):
        raise FormatError("the last line has no newline")
    types, helps, samples, seen = {}, {}, {}, set()
    finished, current = set(), None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    if not re.match("^%s$" % NAME, parts[2]):
                        raise FormatError("bad metric name %r" % parts[2])
                    if parts[1] == "TYPE":
                        if parts[2] in types:
                            raise FormatError("TYPE of %s given twice" % parts[2])
                        if parts[2] in samples:
                            raise FormatError("TYPE of %s after its samples" % parts[2])
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise FormatError("bad TYPE line")
                        types[parts[2]] = parts[3]
                    else:
                        if parts[2] in helps:
                            raise FormatError("HELP of %s given twice" % parts[2])
                        helps[parts[2]] = parts[3] if len(parts) == 4 else ""
                continue
            match = re.match(r"^(%s)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$" % NAME, line)
            if not match:
                raise FormatError("not a sample line")
            name, labels = match.group(1), parse_labels(match.group(2) or "")
            value = parse_value(match.group(3))
            family = family_of(name, types)
            if family != current:
                if family in finished:
                    raise FormatError("samples of %s are not together" % family)
                if current is not None:
                    finished.add(current)
                current = family
            series = (name, tuple(sorted(labels.items())))
            if series in seen:
                raise FormatError("series %s%s repeated" % series)
            seen.add(series)
            if types.get(family) == "counter" and value < 0:
                raise FormatError("counter %s is negative" % name)
            samples.setdefault(name, []).append({"labels": labels, "value": value})
        except FormatError as exc:
            raise FormatError("line %d: %s: %r" % (number, exc, line))
    return {"types": types, "help": helps, "samples": samples}


def main():
    with open(sys.argv[1]) as handle:
        text = handle.read()
    try:
        result = parse(text)
    except FormatError as exc:
        print("not Prometheus text: %s" % exc)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
