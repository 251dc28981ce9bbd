#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory-leak chaos scenario, longer: every arm side by side.

Runs tests/docker/test_chaos.py through tests/docker/run (which starts and
removes the private Docker engine, so nothing of the engine's handling is
copied here) with a longer duration and a slower leak, and prints the table
the scenario reports for self-hosted 25.9.0 (74 services) without and with
the collection and 24.8.0 (57 services) with it: services, sums of the usual
figures and of the limits (the compose_limits role's default plan for
16 GiB, and the same divided by 8 for the 2 GiB parent cgroup that stands for
the host), time to the first 503, number of 503s, the parent's peak, OOM
kills and restarts of the leaker (ingest-replay-recordings) and of every
other service, and when the first early warning fired. Every service is a
stand-in (Sentry's images cannot run here); the relay is a stand-in of
Relay's memory rule, not Relay (tests/docker/chaos/chaos/relay.py). Needs
upstream's checkouts beside the repository (../shared/upstream/self-hosted).

Needs root, Debian's docker.io and a cgroup v1 memory controller; never run
it while the molecule stage runs.

    python bench/chaos.py [--seconds 150] [--leak-mb-per-s 20] [--seed 11] [--rate 20] [--report FILE]
"""

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=150, help="duration of each arm's load")
    parser.add_argument("--leak-mb-per-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rate", type=float, default=20.0, help="envelopes per second")
    parser.add_argument("--report", help="also write every arm's figures (JSON) here")
    args = parser.parse_args()
    print("chaos scenario: %s s of load at %s envelopes/s, leak %s MiB/s, seed %s; the table follows the engine's start"
          % (args.seconds, args.rate, args.leak_mb_per_s, args.seed))
    sys.stdout.flush()
    env = dict(os.environ, SENTRY_MEMORY_CHAOS_SECONDS=str(args.seconds),
               SENTRY_MEMORY_CHAOS_LEAK_MB_PER_S=str(args.leak_mb_per_s),
               SENTRY_MEMORY_CHAOS_SEED=str(args.seed), SENTRY_MEMORY_CHAOS_RATE=str(args.rate))
    if args.report:
        env["SENTRY_MEMORY_CHAOS_REPORT"] = os.path.abspath(args.report)
    # -s: the scenario's fixture prints the side-by-side table; the tests then check the targets.
    proc = subprocess.run([os.path.join(REPO, "tests", "docker", "run"), "-k", "chaos", "-s", "-q"],
                          cwd=REPO, env=env, check=False)
    print("\ntargets met: %s" % ("yes" if proc.returncode == 0 else "NO (tests/docker/run exited %s)" % proc.returncode))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
