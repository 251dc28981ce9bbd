# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the swap role's re-run with nothing to change, in the molecule swap box.

Runs molecule/swap/converge.yml against the box (podman connection) once to
bring it to the converged state, then ``--runs`` more times, and reports for
the role's own tasks: the seconds they took (first task start to last result)
and how many of them ran a module on the box (a result with ``invocation``;
debug, assert, set_fact and skipped tasks run none). The whole ansible-playbook
wall time is printed too.

With ``--against REF`` the role as it was at git commit REF (built and
installed into a temporary collections path) runs too, turn about with the
installed one (A B, B A, ...), so both see the same load on the machine;
the ratio of the medians is printed. Without it, the ratio is against the
figures recorded in BEFORE (the role before its tasks were merged into one
module call, measured the same way).

Needs root (rootful podman) and the box of the swap scenario; run after
`. hacking/env` (which installs the working tree's collection):

    molecule create -s swap
    python bench/swap_rerun.py --runs 5 --against e1f5334
    molecule cleanup -s swap; molecule destroy -s swap   # cleanup switches the box's swapfile off
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERGE = os.path.join(REPO, "molecule", "swap", "converge.yml")

# The role before its tasks were merged into one module call (commit e1f5334), measured with --against e1f5334
# in the swap scenario's box on 2026-12-07 (7 runs each, medians), the machine busy with other work (load 7-8):
# the role's tasks took 3.61 s after the merge (ansible-playbook 5.83 s). --against gives both under today's load.
BEFORE = {"role_seconds": 12.66, "module_tasks": 3, "wall_seconds": 14.86,
          "measured": "2026-12-07 with --against e1f5334 at load 7-8"}

# Records, for each task of the role, when it started, when its result came and whether it ran a module.
CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "swap_rerun"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.tasks = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        role = task._role.get_name() if task._role else None
        self.tasks.append({"name": task.get_name(), "action": task.action, "role": role,
                           "start": time.monotonic(), "end": None, "status": None, "module": False})

    def _done(self, result, status):
        entry = self.tasks[-1]
        entry["end"], entry["status"] = time.monotonic(), status
        entry["module"] = status != "skipped" and "invocation" in result._result

    def v2_runner_on_ok(self, result):
        self._done(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["SWAP_RERUN_OUT"], "w") as handle:
            json.dump(self.tasks, handle)
'''


def install_ref(ref, workdir):
    """The collection as it was at git commit ``ref``, installed under ``workdir``; its collections path."""
    source, build, path = (os.path.join(workdir, name) for name in ("source", "build", "collections"))
    os.makedirs(source)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", build, source], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tarball = glob.glob(os.path.join(build, "*.tar.gz"))
    subprocess.run(["ansible-galaxy", "collection", "install", "--offline", "--force", "-p", path] + tarball,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def run_once(host, workdir, collections=None):
    out = os.path.join(workdir, "tasks.json")
    env = dict(os.environ, SWAP_RERUN_OUT=out, ANSIBLE_CALLBACK_PLUGINS=workdir,
               ANSIBLE_CALLBACKS_ENABLED="swap_rerun", ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")
    if collections:
        env["ANSIBLE_COLLECTIONS_PATH"] = collections
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", "%s," % host, "-e", "ansible_connection=podman", CONVERGE],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                          check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n%s" % proc.stdout[-3000:])
    with open(out) as handle:
        tasks = [t for t in json.load(handle) if (t["role"] or "").split(".")[-1] == "swap" and t["end"] is not None]
    return {
        "wall_seconds": wall,
        "role_seconds": max(t["end"] for t in tasks) - min(t["start"] for t in tasks),
        "module_tasks": sum(1 for t in tasks if t["module"]),
        "changed": [t["name"] for t in tasks if t["status"] == "changed"],
        "tasks": tasks,
    }


def medians(runs):
    return dict((key, statistics.median(r[key] for r in runs)) for key in ("role_seconds", "module_tasks", "wall_seconds"))


def show(title, runs, verbose):
    figures = medians(runs)
    if verbose:
        for task in runs[-1]["tasks"]:
            print("    %-8s %-6s %6.3f s  %s" % (task["status"], "module" if task["module"] else "",
                                                 task["end"] - task["start"], task["name"]))
    print("  %-28s role's tasks %5.2f s (runs %s), tasks that ran a module %d, ansible-playbook %5.2f s"
          % (title, figures["role_seconds"], " ".join("%.2f" % r["role_seconds"] for r in runs), figures["module_tasks"],
             figures["wall_seconds"]))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--host", default="swap-box", help="the podman container (default: the swap scenario's box)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", metavar="REF", help="also run the role as it was at this git commit, turn about")
    parser.add_argument("--verbose", action="store_true", help="list the role's tasks of the last run")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="swap-rerun-")
    try:
        with open(os.path.join(workdir, "swap_rerun.py"), "w") as handle:
            handle.write(CALLBACK)
        sides = [("installed", None)]
        if args.against:
            sides.append((args.against, install_ref(args.against, os.path.join(workdir, "ref"))))
        runs = dict((name, []) for name, dummy in sides)
        for name, path in sides:
            run_once(args.host, workdir, path)  # the converged state, and warm caches
        for index in range(args.runs):
            for name, path in sides if index % 2 == 0 else sides[::-1]:
                runs[name].append(run_once(args.host, workdir, path))
    finally:
        shutil.rmtree(workdir)
    changed = sorted(set(name for side in runs.values() for r in side for name in r["changed"]))
    if changed:
        print("WARNING: a re-run reported changed tasks: %s" % ", ".join(changed))
    print("swap role, re-run with nothing to change (%s, %d runs each, medians)" % (args.host, args.runs))
    now = show("installed", runs["installed"], args.verbose)
    before = show(args.against, runs[args.against], args.verbose) if args.against else BEFORE
    print("  before -> now: role's tasks %.2f s -> %.2f s (%.1fx faster), tasks that ran a module %d -> %d, "
          "ansible-playbook %.2f s -> %.2f s%s"
          % (before["role_seconds"], now["role_seconds"], before["role_seconds"] / now["role_seconds"],
             before["module_tasks"], now["module_tasks"], before["wall_seconds"], now["wall_seconds"],
             "" if args.against else " (before: the recorded figures, measured %s)" % BEFORE["measured"]))
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
