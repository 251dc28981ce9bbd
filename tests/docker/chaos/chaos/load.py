# SPDX-License-Identifier: GPL-3.0-or-later
"""The load driver: envelopes to relay at a steady rate for a bounded time.

Run inside a container of the compose network (`docker compose exec -T nginx
python3 /chaos/load.py ...`): the engine runs with --bridge=none and publishes
no host port. Every answer is recorded with its wall-clock time; the summary
(JSON, on stdout) lists each 503 with its timestamp. It stops by itself after
--seconds (each request times out after 5 s: the 2-core machine also runs up to 74
containers, and a slow answer is the machine, not the memory rule; an error
is still recorded and fails the test).
"""

import argparse
import json
import random
import time
import urllib.error
import urllib.request


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://relay:3000/api/1/envelope/")
    parser.add_argument("--rate", type=float, default=20.0, help="envelopes per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = random.Random(args.seed)
    started = time.time()
    interval = 1.0 / args.rate
    summary = {"started": started, "sent": 0, "ok": 0, "rejected": [], "errors": []}
    next_send = time.monotonic()
    end = next_send + args.seconds
    while next_send < end:
        body = b'{"event_id":"%032x"}\n{"type":"event"}\n' % sizes.getrandbits(128) + b"x" * sizes.randint(200, 4000)
        request = urllib.request.Request(args.url, data=body, headers={"Content-Type": "application/x-sentry-envelope"})
        summary["sent"] += 1
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                answer.read()
            summary["ok"] += 1
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                summary["rejected"].append(time.time())
            else:
                summary["errors"].append([time.time(), "HTTP %s" % exc.code])
        except (urllib.error.URLError, OSError) as exc:
            summary["errors"].append([time.time(), str(exc)])
        next_send += interval
        time.sleep(max(0.0, next_send - time.monotonic()))
    summary["ended"] = time.time()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
