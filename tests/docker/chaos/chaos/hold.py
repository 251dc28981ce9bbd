# SPDX-License-Identifier: GPL-3.0-or-later
"""A steady service: holds its usual figure of anonymous memory and sleeps.

The stand-in of every service of the release but relay, nginx and the
leaker. Its figure (MiB, the usual figure of the role's plan divided by the
scenario's scale factor) is read by service name from --figures, a JSON file
the test writes. The interpreter's own anonymous memory counts towards it,
so the container holds its figure, not the figure plus Python. Arguments
after the options (upstream's command for the service, kept so that the
collection reads what it reads in a real checkout, such as --concurrency)
are ignored. SIGHUP makes it read --figures again and hold the new figure
(the busy-host test moves the whole stack from one level of use to the next).

Boundary: one of Sentry's containers, not the docker CLI (the docker stage runs a real Docker
engine); a stand-in because Sentry's images cannot be pulled here (no registry). See tests/docker/README.md.
"""

import argparse
import json
import signal
import sys

MIB = 1024 * 1024


def own_anon_bytes():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def hold(service, figures):
    """Bytes written one by one (resident, not zero pages) up to the service's figure."""
    with open(figures) as handle:
        want = int(json.load(handle).get(service, 0) * MIB)
    return b"\x01" * max(0, want - own_anon_bytes())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", required=True)
    parser.add_argument("--figures", default="/state/hold.json")
    parser.add_argument("upstream_command", nargs="*", help="ignored")
    args = parser.parse_args()
    # As PID 1 the process gets no default signal handlers: stop on SIGTERM as a service does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    reload = []
    signal.signal(signal.SIGHUP, lambda signum, frame: reload.append(True))
    held = hold(args.service, args.figures)
    while held is not None:
        signal.pause()  # until a signal; a handled SIGHUP returns here
        if reload:
            del reload[:]
            held = None  # freed first, so the container never holds both figures
            held = hold(args.service, args.figures)


if __name__ == "__main__":
    main()
