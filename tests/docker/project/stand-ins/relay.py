# SPDX-License-Identifier: GPL-3.0-or-later
"""Relay's stand-in: its health endpoints on port 3000, readiness toggled by a file.

/api/relay/healthcheck/ready/ answers 503 while /state/relay-unhealthy exists
(as Relay does when its memory probe fails) and 200 otherwise; live always
answers 200. Each start is appended to /state/relay.log.

Boundary: one of Sentry's containers, not the docker CLI (the docker stage runs a real Docker
engine); a stand-in because Sentry's images cannot be pulled here (no registry). See tests/docker/README.md.
"""

import http.server
import json
import os
import signal
import sys
import time

STATE = "/state"
UNHEALTHY_FLAG = os.path.join(STATE, "relay-unhealthy")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/api/relay/healthcheck/ready/"):
            healthy = not os.path.exists(UNHEALTHY_FLAG)
        elif self.path.startswith("/api/relay/healthcheck/live/"):
            healthy = True
        else:
            self.send_error(404)
            return
        body = json.dumps({"is_healthy": healthy}).encode()
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    hold = b"\x01" * (int(os.environ.get("RELAY_STANDIN_HOLD_MB", "24")) * 1024 * 1024)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server = http.server.ThreadingHTTPServer(("", 3000), Handler)
    with open(os.path.join(STATE, "relay.log"), "a") as log:
        log.write("start pid=%d time=%.3f\n" % (os.getpid(), time.time()))
    server.hold = hold
    server.serve_forever()


if __name__ == "__main__":
    main()
