# SPDX-License-Identifier: GPL-3.0-or-later
"""Each role README's variable table is what docs/generate_readme_tables.py makes of the role's argument specs."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.listdir(os.path.join(REPO, "roles")))


def test_tables_are_in_step_with_the_argument_specs():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "docs", "generate_readme_tables.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_role_readme_has_a_table_without_raw_markup_and_the_main_readme_links_it():
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    for role in ROLES:
        with open(os.path.join(REPO, "roles", role, "README.md")) as handle:
            text = handle.read()
        table = text.split("<!-- role variables -->", 1)[1].split("<!-- end role variables -->", 1)[0]
        assert table.count("\n| `") >= 2, role
        assert not re.search(r"\b[CVOMPIBLU]\(", table), (role, re.findall(r"\b[CVOMPIBLU]\([^)]*\)", table))
        assert "roles/%s/README.md" % role in readme, role
