# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmarks' one timer: the median wall time of a function over some runs (python bench/NAME.py imports it)."""

import statistics
import time


def median_time(function, runs):
    """Seconds ``function()`` takes, the median of ``runs`` calls."""
    values = []
    for dummy in range(runs):
        start = time.perf_counter()
        function()
        values.append(time.perf_counter() - start)
    return statistics.median(values)
