# SPDX-License-Identifier: GPL-3.0-or-later
"""A leaking service: once /state/go exists, grows its anonymous memory steadily.

Every tenth of a second it keeps another chunk of rate/10 MiB written byte by
byte (resident, not zero pages), with a seeded jitter of +-20% around the rate,
like the slow leak of the original report. It stops growing at --max-mb and
then holds what it has. Restarted (after an OOM kill) it leaks again from zero.

Boundary: one of Sentry's containers, not the docker CLI (the docker stage runs a real Docker
engine); a stand-in because Sentry's images cannot be pulled here (no registry). See tests/docker/README.md.
"""

import argparse
import os
import random
import signal
import sys
import time

MIB = 1024 * 1024
STEP = 0.1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-mb", type=float, default=20.0, help="MiB per second")
    parser.add_argument("--max-mb", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--go", default="/state/go")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    while not os.path.exists(args.go):
        time.sleep(STEP)
    jitter = random.Random(args.seed)
    held = []
    size = 0
    next_step = time.monotonic()
    while True:
        if size < args.max_mb * MIB:
            chunk = int(args.rate_mb * MIB * STEP * jitter.uniform(0.8, 1.2))
            held.append(b"\x01" * chunk)
            size += chunk
        next_step += STEP
        time.sleep(max(0.0, next_step - time.monotonic()))


if __name__ == "__main__":
    main()
