#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""The default plan of memory_budget for each upstream release beside the checkout, at upstream's supported sizes.

    . hacking/env && python bench/sizing.py            # a Markdown table
    python bench/sizing.py --release 25.9.0 --ram 16384 --profile feature-complete --lines

Reads ../shared/upstream/self-hosted/<tag>/docker-compose.yml (it needs that
folder). For contrast it also says what strict mode (the sum of the limits
within 75% of RAM, this collection's earlier rule) would need.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import conftest  # noqa: E402  pylint: disable=wrong-import-position,unused-import
import checkouts  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb  # noqa: E402

CASES = [("feature-complete", 16384), ("errors-only", 8192), ("feature-complete", 32768), ("feature-complete", 8192)]


def services(tag):
    return checkouts.service_profiles(checkouts.upstream(tag))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--release")
    parser.add_argument("--ram", type=int)
    parser.add_argument("--profile", default="feature-complete")
    parser.add_argument("--lines", action="store_true", help="print the plan's table lines")
    args = parser.parse_args()
    tags = [args.release] if args.release else checkouts.upstream_releases()
    if not tags:
        sys.exit("no releases under %s" % checkouts.UPSTREAM)
    cases = [(args.profile, args.ram)] if args.ram else CASES
    print("| release | profile | RAM | services | usual sum | headroom | sum of limits | web / relay / kafka limit | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tag in tags:
        for profile, ram in cases:
            plan = mb.plan(services(tag), ram, profiles=[profile])
            strict = mb.plan(services(tag), ram, profiles=[profile], strict=True)
            contrast = "strict mode refuses (needs %d GiB)" % strict["ram_that_fits_gib"] if not strict["fits"] else "strict mode fits"
            count = len([s for s in services(tag) if not s["profiles"] or profile in s["profiles"]])
            if plan["fits"]:
                s = plan["services"]
                print("| %s | %s | %d GiB | %d | %d MiB | %d MiB | %d MiB (%d%% of RAM) | %d / %d / %d MiB | sized; %s |" % (
                    tag, profile, ram // 1024, count, plan["usual_sum_mb"], plan["headroom_mb"], plan["sum_mb"],
                    round(100.0 * plan["sum_mb"] / ram), s["web"]["mem_limit_mb"], s["relay"]["mem_limit_mb"],
                    s["kafka"]["mem_limit_mb"], contrast))
                if args.lines:
                    print("\n".join(mb.memory_budget_table(plan)))
            else:
                print("| %s | %s | %d GiB | %d | %d MiB | %d MiB | - | - | refused: needs %d GiB |" % (
                    tag, profile, ram // 1024, count, plan["usual_sum_mb"], plan["headroom_mb"], plan["ram_that_fits_gib"]))


if __name__ == "__main__":
    main()
