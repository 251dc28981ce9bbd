# SPDX-License-Identifier: GPL-3.0-or-later
"""Every filter of the installed collection has its own ansible-doc page."""

import ast
import glob
import json
import os
import subprocess

import pytest

from conftest import REPO, tool


def filter_names():
    """The names each plugins/filter/*.py file's FilterModule.filters() returns (read from the source)."""
    names = []
    for path in sorted(glob.glob(os.path.join(REPO, "plugins", "filter", "*.py"))):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                returned = next(n.value for n in ast.walk(node) if isinstance(n, ast.Return))
                names += [key.value for key in returned.keys]
    return names


@pytest.mark.parametrize("name", filter_names())
def test_each_filter_has_its_own_page(name, ansible_env):
    full = "sentry_selfhosted.memory.%s" % name
    proc = subprocess.run([tool("ansible-doc"), "-t", "filter", "-j", full],
                          env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[full]
    assert doc["doc"]["name"] == name, doc["doc"]["name"]
    assert doc["doc"]["short_description"] and doc["examples"] and doc["return"]["_value"]
    assert name in doc["examples"]


def test_every_filter_is_found():
    assert {"memory_budget", "memory_budget_table", "memory_report", "memory_recommendations"} <= set(filter_names())
