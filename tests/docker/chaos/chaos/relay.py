# SPDX-License-Identifier: GPL-3.0-or-later
"""A STAND-IN OF RELAY'S MEMORY RULE, NOT RELAY.

It answers what Relay 24.8 answers when its "system memory" health probe
decides: /api/relay/healthcheck/ready/ and the envelope endpoint give 503
while used / total >= the threshold (health.max_memory_percent, 0.95), 200
otherwise. Real Relay applies the rule to its own figures (the table in the
collection's brief); this stand-in applies it to the figures of the chaos
scenario's parent cgroup, which stands for "the host" (as Relay 24.8 on a
cgroup v2 host without a limit on relay measures the whole host): used =
total_rss (cgroup v1) or anon (v2), total = min(limit, MemTotal).

The figures and the verdict come from the collection's host_memory.py (its
one parser of cgroup files) and sentry_checkout.py (Relay's rule), mounted
beside this file with the module_utils they import.
It counts what it accepted and rejected (GET /stats), and holds relay's usual
figure of the scenario (hold.py) as the other stand-ins do. Standard library only.

Boundary: one of Sentry's containers, not the docker CLI (the docker stage runs a real Docker
engine); a stand-in because Sentry's images cannot be pulled here (no registry). See tests/docker/README.md.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_memory as hm  # noqa: E402  pylint: disable=wrong-import-position
import sentry_checkout as ck  # noqa: E402  pylint: disable=wrong-import-position
from hold import hold  # noqa: E402  pylint: disable=wrong-import-position

READY = hm.RELAY_READY_PATH
# Relay re-reads its memory figures at most every memory_stat_refresh_frequency_ms (100).
REFRESH_SECONDS = 0.1


class Rule:
    """Relay 24.8's verdict on the parent cgroup's figures, refreshed at most every 100 ms."""

    def __init__(self, cgroup_dir, version, threshold):
        self.cgroup_dir = cgroup_dir
        self.version = version
        self.threshold = threshold
        self.lock = threading.Lock()
        self.read_at = 0.0
        self.view = None
        self.counts = {"accepted": 0, "rejected": 0, "ready_200": 0, "ready_503": 0}

    def current(self):
        with self.lock:
            now = time.monotonic()
            if self.view is None or now - self.read_at >= REFRESH_SECONDS:
                figures = hm.read_cgroup_memory(self.cgroup_dir, self.version)
                # Relay 24.8 on a cgroup v1 host: used = total_rss, total = min(limit, MemTotal).
                self.view = ck.relay_view(hm.read_meminfo("/"), (24, 8, 0), "v1" if self.version == 1 else "v2",
                                          figures, self.threshold)
                self.read_at = now
            return self.view

    def count(self, key):
        with self.lock:
            self.counts[key] += 1


def handler_for(rule):
    class Handler(BaseHTTPRequestHandler):
        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == READY:
                view = rule.current()
                ok = not view["would_reject"]
                rule.count("ready_200" if ok else "ready_503")
                self.answer(200 if ok else 503, {"is_healthy": ok, "used_percent": view["used_percent"]})
            elif self.path == "/stats":
                view = rule.current()
                with rule.lock:
                    counts = dict(rule.counts)
                self.answer(200, dict(counts, used=view["used"], total=view["total"], used_percent=view["used_percent"]))
            else:
                self.answer(404, {"detail": "not found"})

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if not self.path.endswith("/envelope/"):
                self.answer(404, {"detail": "not found"})
                return
            view = rule.current()
            if view["would_reject"]:
                rule.count("rejected")
                self.answer(503, {"detail": "failed to queue envelope"})
            else:
                rule.count("accepted")
                self.answer(200, {"id": "0" * 32})

        def log_message(self, fmt, *args):  # quiet: the load driver records every answer
            return

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cgroup", default="/parent-cgroup", help="the parent cgroup's directory, mounted read-only")
    parser.add_argument("--cgroup-version", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=ck.DEFAULT_RELAY_THRESHOLD)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--figures", help="hold relay's figure from this file (see hold.py)")
    args = parser.parse_args()
    held = [hold("relay", args.figures) if args.figures else b""]  # kept while the server runs

    def hold_again(signum, frame):  # SIGHUP: the figure is read again, as hold.py does
        held[0] = b""
        held[0] = hold("relay", args.figures) if args.figures else b""
    signal.signal(signal.SIGHUP, hold_again)
    rule = Rule(args.cgroup, args.cgroup_version, args.threshold)
    rule.current()  # fail at start, not per request, when the figures cannot be read
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    ThreadingHTTPServer(("", args.port), handler_for(rule)).serve_forever()


if __name__ == "__main__":
    main()
