# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the checkout importable as ansible_collections.sentry_selfhosted.memory.

Unit tests import the source tree; integration tests and molecule use the
built and installed copy (see hacking/env).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TREE = os.path.join(REPO, ".cache", "pytest-collections")
_LINK = os.path.join(_TREE, "ansible_collections", "sentry_selfhosted", "memory")

if not os.path.islink(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    try:
        os.symlink(REPO, _LINK)
    except FileExistsError:  # another pytest-xdist worker made it first
        pass
if _TREE not in sys.path:
    sys.path.insert(0, _TREE)

# The checkouts every test uses, and their reader: tests/checkouts.py.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
