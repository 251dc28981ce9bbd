#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the per-role variable tables of README.md from each role's argument specs.

The tables stand between `<!-- role variables: ROLE -->` and
`<!-- end role variables: ROLE -->` markers; everything else in README.md is
left as it is. Defaults come from the role's defaults/main.yml (what the role
really uses), types and descriptions from meta/argument_specs.yml, so the
README cannot drift from the specs (tests/unit/test_readme_tables.py checks).

    python docs/generate_readme_tables.py          # rewrite README.md
    python docs/generate_readme_tables.py --check  # exit 1 when README.md is stale
"""

import argparse
import json
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
MARKER = re.compile(r"(<!-- role variables: (\w+) -->\n)(.*?)(<!-- end role variables: \2 -->)", re.S)


def first_sentence(description):
    text = " ".join(description) if isinstance(description, list) else str(description or "")
    text = " ".join(text.split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return (match.group(1) if match else text).replace("|", "\\|")


def shown(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "`%s`" % value if value else '`""`'
    if isinstance(value, (int, float)):
        return "`%s`" % value
    return "`%s`" % json.dumps(value).replace("|", "\\|")


def table(role):
    base = os.path.join(REPO, "roles", role)
    with open(os.path.join(base, "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    defaults_path = os.path.join(base, "defaults", "main.yml")
    defaults = {}
    if os.path.exists(defaults_path):
        with open(defaults_path) as handle:
            defaults = yaml.safe_load(handle) or {}
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name in sorted(options):
        spec = options[name]
        kind = spec.get("type", "str")
        if kind == "list" and spec.get("elements"):
            kind = "list of %s" % spec["elements"]
        default = shown(defaults[name]) if name in defaults else ("required" if spec.get("required") else "unset")
        rows.append("| `%s` | %s | %s | %s |" % (name, kind, default, first_sentence(spec.get("description"))))
    return "\n".join(rows) + "\n"


def render(text):
    return MARKER.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args()
    with open(README) as handle:
        current = handle.read()
    wanted = render(current)
    if options.check:
        if wanted != current:
            sys.exit("README.md's role variable tables are stale: run python docs/generate_readme_tables.py")
        return
    with open(README, "w") as handle:
        handle.write(wanted)


if __name__ == "__main__":
    main()
