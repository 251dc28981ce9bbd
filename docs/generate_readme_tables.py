#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write each role's variable table into its README.md from the role's argument specs.

The argument specs are the one source: types and descriptions come from
meta/argument_specs.yml, defaults from defaults/main.yml (what the role really
uses). The table stands between `<!-- role variables -->` and
`<!-- end role variables -->` in roles/ROLE/README.md; everything else there is
prose and left as it is. Ansible's documentation markup (C(), V(), O(), M(),
P(), L(), U(), I(), B()) is rendered as Markdown.
(tests/unit/test_readme_tables.py checks the tables are current.)

    python docs/generate_readme_tables.py          # rewrite the role READMEs
    python docs/generate_readme_tables.py --check  # exit 1 when one is stale
"""

import argparse
import glob
import json
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"(<!-- role variables -->\n)(.*?)(<!-- end role variables -->)", re.S)
MARKUP = [
    (re.compile(r"L\(([^,()]+),\s*([^()]+)\)"), r"[\1](\2)"),
    (re.compile(r"U\(([^()]+)\)"), r"<\1>"),
    (re.compile(r"P\(([^#()]+)#[a-z]+\)"), r"`\1`"),
    (re.compile(r"[CVOMP]\(((?:[^()]|\([^()]*\))+)\)"), r"`\1`"),
    (re.compile(r"I\(([^()]+)\)"), r"*\1*"),
    (re.compile(r"B\(([^()]+)\)"), r"**\1**"),
]


def markdown(text):
    """Ansible's documentation markup as Markdown, on one line, safe inside a table cell."""
    text = " ".join(str(text).split())
    for pattern, replacement in MARKUP:
        text = pattern.sub(replacement, text)
    return text.replace("|", "\\|")


def meaning(description):
    """The whole description: every paragraph, so that no sentence is cut (at an "e.g.", say)."""
    parts = description if isinstance(description, list) else [description or ""]
    return " ".join(markdown(part) for part in parts)


def shown(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "`%s`" % ("true" if value else "false")
    if isinstance(value, str):
        return ("`%s`" % value if value else '`""`').replace("|", "\\|")
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
        if name in defaults:
            default = shown(defaults[name])
        elif "default" in spec:  # a collection-wide variable: its default is in the role's vars as a fallback
            default = shown(spec["default"])
        else:
            default = "required" if spec.get("required") else "unset"
        rows.append("| `%s` | %s | %s | %s |" % (name, kind, default, meaning(spec.get("description"))))
    return "\n".join(rows) + "\n"


def role_readmes():
    return sorted(glob.glob(os.path.join(REPO, "roles", "*", "README.md")))


def render(role, text):
    if not MARKER.search(text):
        raise SystemExit("roles/%s/README.md has no <!-- role variables --> markers" % role)
    return MARKER.sub(lambda m: m.group(1) + table(role) + m.group(3), text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args()
    stale = []
    for path in role_readmes():
        role = os.path.basename(os.path.dirname(path))
        with open(path) as handle:
            current = handle.read()
        wanted = render(role, current)
        if wanted == current:
            continue
        stale.append(os.path.relpath(path, REPO))
        if not options.check:
            with open(path, "w") as handle:
                handle.write(wanted)
    if options.check and stale:
        sys.exit("stale role variable tables in %s: run python docs/generate_readme_tables.py" % ", ".join(stale))


if __name__ == "__main__":
    main()
