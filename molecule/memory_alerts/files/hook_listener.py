# SPDX-License-Identifier: GPL-3.0-or-later
"""A webhook receiver on loopback for the scenario: appends each POST body as one JSON line.

Boundary: the operator's webhook endpoint (a chat or paging service), which the
test boxes cannot reach; the alerts check posts to this one as it would to that.
"""

import http.server
import json
import sys

PORT = int(sys.argv[1])
OUT = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(OUT, "a") as handle:
            handle.write(json.dumps({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                     "body": json.loads(body)}) + "\n")
        self.send_response(204)
        self.end_headers()


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
