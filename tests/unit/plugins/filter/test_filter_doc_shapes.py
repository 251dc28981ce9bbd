# SPDX-License-Identifier: GPL-3.0-or-later
"""The filters' documentation files parse into the keys Ansible's documentation knows.

An unquoted comma in a YAML flow map splits a description into a stray key
("or null without one.") that ansible-doc then drops silently."""

import glob
import os

import pytest
import yaml

FILTERS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "filter")
KNOWN = {"description", "type", "elements", "contains", "returned", "sample", "required", "default", "choices",
         "aliases", "version_added", "suboptions", "no_log"}


def entries(tree, where):
    """(where, dict) of every option or return value below a documentation tree."""
    for name, entry in (tree or {}).items():
        yield "%s.%s" % (where, name), entry
        for nested in ("contains", "suboptions"):
            if isinstance(entry, dict) and nested in entry:
                yield from entries(entry[nested], "%s.%s" % (where, name))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(FILTERS, "*.yml"))), ids=os.path.basename)
def test_every_documented_entry_has_only_known_keys(path):
    with open(path) as handle:
        doc = yaml.safe_load(handle)
    found = list(entries(doc["DOCUMENTATION"].get("options"), "options")) + list(entries(doc.get("RETURN"), "RETURN"))
    assert found
    stray = ["%s: %s" % (where, sorted(set(entry) - KNOWN)) for where, entry in found if set(entry) - KNOWN]
    assert stray == []
