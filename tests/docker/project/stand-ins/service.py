# SPDX-License-Identifier: GPL-3.0-or-later
"""An ordinary self-hosted service: holds some anonymous memory, maybe serves HTTP, stops on SIGTERM.

Boundary: one of Sentry's containers, not the docker CLI (the docker stage runs a real Docker
engine); a stand-in because Sentry's images cannot be pulled here (no registry). See tests/docker/README.md.
"""

import argparse
import http.server
import signal
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold-mb", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    args = parser.parse_args()
    # Written byte by byte (not calloc'd zero pages), so it is resident.
    held = b"\x01" * (args.hold_mb * 1024 * 1024)
    # As PID 1 the process gets no default signal handlers: stop on SIGTERM as a service does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if args.http_port:
        http.server.ThreadingHTTPServer(("", args.http_port), http.server.SimpleHTTPRequestHandler).serve_forever()
    while held is not None:
        time.sleep(3600)


if __name__ == "__main__":
    main()
