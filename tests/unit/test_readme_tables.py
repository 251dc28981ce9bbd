# SPDX-License-Identifier: GPL-3.0-or-later
"""README.md's role variable tables are what docs/generate_readme_tables.py makes of the specs."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tables_are_in_step_with_the_argument_specs():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "docs", "generate_readme_tables.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_role_has_a_table():
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    roles = sorted(os.listdir(os.path.join(REPO, "roles")))
    tabled = sorted(re.findall(r"<!-- role variables: (\w+) -->", readme))
    assert tabled == roles
