#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""What compose_override costs, against the alternatives.

1. The merge: the module's line editor against a ruamel.yaml round trip (what
   a controller-side action plugin keeping comments would use), both setting
   the same managed keys for every service of a checkout.
2. The whole module logic (read the checkout, plan, merge, validate with
   `docker compose config`, write) against one bare `docker compose config`,
   the floor any validated write pays.

Run after `. hacking/env` (Compose v2 as a Docker CLI plugin):
    python bench/compose_override.py [--runs 15] [--checkout tests/fixtures/checkout]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.join(REPO, ".cache", "pytest-collections")
LINK = os.path.join(TREE, "ansible_collections", "sentry_selfhosted", "memory")
if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
sys.path.insert(0, TREE)

# pylint: disable=wrong-import-position
from ansible_collections.sentry_selfhosted.memory.plugins.filter.memory_budget import plan as budget_plan  # noqa: E402
from ansible_collections.sentry_selfhosted.memory.plugins.module_utils.sentry_compose import SentryCompose  # noqa: E402
from ansible_collections.sentry_selfhosted.memory.plugins.modules import compose_override as co  # noqa: E402
from timing import median_time  # noqa: E402  pylint: disable=wrong-import-position


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class Module:
    def __init__(self, project_dir, plan):
        self.params = dict(project_dir=project_dir, plan=plan, backup=False, apply=False, docker="docker")
        self.check_mode = False
        self.tmpdir = None

    def fail_json(self, msg, **kwargs):
        sys.exit("bench: %s" % msg)

    def backup_local(self, path):
        return None

    def atomic_move(self, src, dest):
        os.rename(src, dest)


def line_merge(text, plan):
    doc = co.YamlText(text)
    for name, row in plan["services"].items():
        doc.set_value(["services", name, "mem_limit"], "%dm" % row["mem_limit_mb"])
        doc.set_value(["services", name, "memswap_limit"], "%dm" % row["memswap_limit_mb"])
    return doc.text()


def ruamel_merge(text, plan):
    from ruamel.yaml import YAML  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    yaml = YAML()
    data = yaml.load(text) or {}
    services = data.setdefault("services", {})
    for name, row in plan["services"].items():
        service = services.setdefault(name, {})
        service["mem_limit"] = "%dm" % row["mem_limit_mb"]
        service["memswap_limit"] = "%dm" % row["memswap_limit_mb"]
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--checkout", default=os.path.join(REPO, "..", "shared", "upstream", "self-hosted", "26.8.0"))
    args = parser.parse_args()
    if not os.path.isdir(args.checkout):
        args.checkout = os.path.join(REPO, "tests", "fixtures", "checkout")
    work = tempfile.mkdtemp()
    try:
        project = os.path.join(work, "sentry")
        shutil.copytree(args.checkout, project)
        subprocess.run(["chmod", "-R", "u+w", project], check=True)
        compose = SentryCompose(project, run)
        services = compose.services()
        plan = budget_plan(services, 262144)
        operator = "# operator\nservices:\n  web:\n    environment:\n      A: \"1\"  # keep\n"

        line = median_time(lambda: line_merge(operator, plan), args.runs)
        ruamel = median_time(lambda: ruamel_merge(operator, plan), args.runs)
        print("checkout %s: %d services" % (os.path.relpath(args.checkout, REPO), len(services)))
        print("merge, line editor     %8.2f ms" % (line * 1000))
        print("merge, ruamel.yaml     %8.2f ms   (line editor is %.1fx %s)"
              % (ruamel * 1000, max(ruamel, line) / min(ruamel, line), "faster" if line < ruamel else "slower"))

        def whole():
            if os.path.exists(os.path.join(project, "docker-compose.override.yml")):
                os.unlink(os.path.join(project, "docker-compose.override.yml"))
            co.ComposeOverride(Module(project, plan), SentryCompose(project, run)).run()
        module = median_time(whole, max(3, args.runs // 3))
        bare = median_time(compose.config, max(3, args.runs // 3))
        print("module logic, 1st write %7.0f ms" % (module * 1000))
        print("docker compose config  %8.0f ms   (module = %.1fx one config call)" % (bare * 1000, module / bare))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
