#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wall time of the site playbook on 1 host and on N hosts at once.

For each fleet size it starts that many systemd containers (podman, the
image of hacking/systemd-image, built first when it is missing), prepares them as the molecule scenario
`site` does (checkout fixture, real Compose CLI, the docker stand-in: there
is no Docker engine in the boxes), then times the converge of
molecule/site_fleet/converge.yml (site playbook, no swap) and an idempotent
re-run over the containers.podman connection. The containers are removed
by the names this program gave them.

Printed: seconds per run, and the N-host run against the alternative of
running the playbook host after host (N x the 1-host time).

    . hacking/env && python bench/site_fleet.py            # 1 and 5 hosts
    python bench/site_fleet.py --hosts 3 --forks 5
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "localhost/bookworm-systemd:latest"
# The same image with OpenSSH's server, for measuring over SSH as a fleet is reached (derived once, see ensure_ssh_image).
SSH_IMAGE = "localhost/bookworm-systemd-ssh:latest"
PREPARE = os.path.join(REPO, "molecule", "shared", "site_prepare.yml")
CONVERGE = os.path.join(REPO, "molecule", "site_fleet", "converge.yml")
SYSTEMD_IMAGE = os.path.join(REPO, "hacking", "systemd-image")


def ensure_image():
    """Build and import the systemd image when podman lacks it (as tests/run does; about a minute the first time)."""
    proc = subprocess.run([SYSTEMD_IMAGE], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("hacking/systemd-image failed; it needs root and the Debian packages podman, runc and "
                         "debootstrap (apt-get install podman runc debootstrap):\n" + proc.stderr)


def podman(*args, **kwargs):
    return subprocess.run(["podman"] + list(args), check=True, capture_output=True, text=True, **kwargs).stdout


def ensure_ssh_image():
    """Derive SSH_IMAGE from IMAGE once: OpenSSH's server installed with apt in a box (Debian's mirror is reachable)."""
    if subprocess.run(["podman", "image", "exists", SSH_IMAGE], check=False).returncode == 0:
        return
    name = "bench-ssh-image-%d" % os.getpid()
    start([name])
    try:
        podman("exec", "-e", "DEBIAN_FRONTEND=noninteractive", name, "sh", "-c",
               "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server && apt-get clean")
        podman("commit", "--change", 'CMD ["/sbin/init"]', name, SSH_IMAGE)
    finally:
        remove([name])


def start(names, image=IMAGE):
    for name in names:
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd", "always", image, "/sbin/init")


def remove(names):
    for name in names:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)


def ssh_host(name, directory):
    """Inventory variables reaching box ``name`` over SSH as root, with a key of ``directory`` put in the box."""
    key = os.path.join(directory, "id_ed25519")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub", encoding="utf-8") as handle:
        podman("exec", "-i", name, "sh", "-c", "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
               input=handle.read())
    address = podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).strip()
    return {"ansible_host": address, "ansible_user": "root", "ansible_ssh_private_key_file": key,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}


def inventory(names, directory, connection="podman"):
    """An inventory of the boxes over the podman connection, or over SSH (Ansible's own ssh connection)."""
    path = os.path.join(directory, "inventory.json")
    hosts = {}
    for name in names:
        hosts[name] = ssh_host(name, directory) if connection == "ssh" else {"ansible_connection": "containers.podman.podman"}
        hosts[name]["ansible_python_interpreter"] = "/usr/bin/python3"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"all": {"hosts": hosts}}, handle)
    return path


def playbook(path, inventory_path, forks):
    """Run a playbook; return (seconds, total changed over the hosts)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_FORKS=str(forks), ANSIBLE_HOST_KEY_CHECKING="0")
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", inventory_path, path], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit("%s failed (rc %d)" % (os.path.basename(path), proc.returncode))
    stats = json.loads(proc.stdout)["stats"]
    return seconds, sum(host["changed"] for host in stats.values())


def measure(count, forks, tag):
    names = ["bench-site-%s-%d" % (tag, index) for index in range(1, count + 1)]
    directory = tempfile.mkdtemp(prefix="bench-site-fleet-")
    try:
        start(names)
        path = inventory(names, directory)
        playbook(PREPARE, path, forks)
        converge, changed = playbook(CONVERGE, path, forks)
        rerun, rechanged = playbook(CONVERGE, path, forks)
    finally:
        remove(names)
    if changed == 0 or rechanged != 0:
        raise SystemExit("unexpected: converge changed %d, re-run changed %d" % (changed, rechanged))
    return converge, rerun


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=5, help="the larger fleet size (default 5)")
    parser.add_argument("--forks", type=int, default=5, help="ansible forks (default 5)")
    args = parser.parse_args()
    if not os.environ.get("DOCKER_CONFIG"):
        raise SystemExit("source hacking/env first (it provides the Compose CLI plugin under DOCKER_CONFIG)")
    ensure_image()
    tag = str(os.getpid())
    one = measure(1, args.forks, tag + "-a")
    many = measure(args.hosts, args.forks, tag + "-b")
    print("site playbook (no swap), forks %d, %d CPUs" % (args.forks, os.cpu_count()))
    print("%-8s %12s %12s" % ("hosts", "converge s", "re-run s"))
    print("%-8d %12.1f %12.1f" % (1, one[0], one[1]))
    print("%-8d %12.1f %12.1f" % (args.hosts, many[0], many[1]))
    print("ratio %d hosts / 1 host:          converge %.2f, re-run %.2f"
          % (args.hosts, many[0] / one[0], many[1] / one[1]))
    print("ratio %d at once / %d one by one: converge %.2f, re-run %.2f"
          % (args.hosts, args.hosts, many[0] / (args.hosts * one[0]), many[1] / (args.hosts * one[1])))


if __name__ == "__main__":
    main()
