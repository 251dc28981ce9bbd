#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory_budget plan for each upstream release beside the checkout, fresh and busy, at upstream's sizes.

    . hacking/env && python bench/sizing.py            # a Markdown table
    python bench/sizing.py --release 25.9.0 --ram 16384 --profile feature-complete --in-use 12 --lines

Reads ../shared/upstream/self-hosted/<tag>/docker-compose.yml (it needs that
folder). For each release and profile, at upstream's size (feature-complete on
16 GiB, errors-only on 8 GiB): the fresh host (no containers yet, the table's
usual figures) and a busy host at several levels of use, spread over the
services as tests/checkouts.busy_use spreads it (measured use, page cache in
the stores' containers as memory_info reports it). Each row: what the services
use, the plan's usual sum, the headroom below Relay's threshold, relay's
limit, and whether the plan holds the single-fault rule, is written with a
warning, or is refused. For contrast, what this collection's earlier sizing
(memory.current/peak with page cache, 64 MiB steps) would have summed.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import conftest  # noqa: E402  pylint: disable=wrong-import-position,unused-import
import checkouts  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.sentry_selfhosted.memory.plugins.filter import memory_budget as mb  # noqa: E402

SIZES = [("feature-complete", 16384, (None, 4, 8, 12, 14)), ("errors-only", 8192, (None, 2, 4, 6))]
MIB = 1024 * 1024


def earlier_sum(containers):
    """What the earlier sizing summed: max(peak, current) per container (page cache included), rounded up to 64 MiB."""
    return sum(int(math.ceil(max(c["peak"], c["current"]) / (64.0 * MIB))) * 64 for c in containers)


def row(tag, profile, ram, level):
    path = checkouts.upstream(tag)
    services = checkouts.service_profiles(path)
    if level is None:
        measured, use_mb, before = [], None, None
    else:
        use = checkouts.busy_use(path, profile, level * 1024)
        measured, use_mb = checkouts.busy_containers(use), sum(use.values())
        before = earlier_sum(measured)
    plan = mb.plan(services, ram, profiles=[profile], measured=measured)
    if not plan["fits"]:
        verdict, relay = "refused", "-"
    else:
        verdict = "plan, the rule holds" if not plan["past_rule"] else "plan with a warning (%d past the rule)" % len(plan["past_rule"])
        relay = "%d MiB" % plan["services"]["relay"]["mem_limit_mb"]
    return plan, ("| %s | %s | %d GiB | %s | %s | %d MiB | %d MiB | %s | %s | %s |" % (
        tag, profile, ram // 1024, "fresh (table)" if level is None else "%d GiB" % level,
        "-" if use_mb is None else "%d MiB" % use_mb, plan["usual_sum_mb"], plan["headroom_mb"], relay, verdict,
        "-" if before is None else "%d MiB (%.2fx)" % (before, before / float(plan["usual_sum_mb"]))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--release")
    parser.add_argument("--ram", type=int)
    parser.add_argument("--profile", default="feature-complete")
    parser.add_argument("--in-use", type=int, help="GiB in use (a busy host); without it, the fresh host")
    parser.add_argument("--lines", action="store_true", help="print the plan's table lines")
    args = parser.parse_args()
    tags = [args.release] if args.release else checkouts.upstream_releases()
    if not tags:
        sys.exit("no releases under %s" % checkouts.UPSTREAM)
    sizes = [(args.profile, args.ram, (args.in_use,))] if args.ram else SIZES
    print("| release | profile | RAM | host | services use | usual sum | headroom | relay's limit | result |"
          " earlier sizing summed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tag in tags:
        for profile, ram, levels in sizes:
            for level in levels:
                plan, line = row(tag, profile, ram, level)
                print(line)
                if args.lines:
                    print("\n".join(mb.memory_budget_table(plan)))


if __name__ == "__main__":
    main()
