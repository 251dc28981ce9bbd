# SPDX-License-Identifier: GPL-3.0-or-later
"""Sample /proc/swaps until a stop file appears; write the fewest active areas seen under a prefix.

Used by the swap scenario to show that a resize never leaves the host without
the swap it manages: python3 swap_watch.py PREFIX STOPFILE OUTFILE
"""
import os
import sys
import time

prefix, stop, out = sys.argv[1:4]
fewest, samples = None, 0
while not os.path.exists(stop):
    with open("/proc/swaps") as handle:
        lines = handle.read().splitlines()[1:]
    count = sum(1 for line in lines if line.split()[0].startswith(prefix))
    fewest = count if fewest is None else min(fewest, count)
    samples += 1
    time.sleep(0.0005)
with open(out, "w") as handle:
    handle.write("%d %d\n" % (fewest, samples))
