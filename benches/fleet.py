#!/usr/bin/env python3
"""Fleet benchmark: N packd processes on one machine follow one channel
served by one nginx (Debian's, on loopback), as a fleet follows a
publisher's static host.

Each agent has its own database and data directory, `--workers 1`, and
follows the channel with `activate: auto` and a short interval. Then:
  1. the publisher publishes version 2 marked active (`rollout` 100): the
     time until each agent has it active (p50, p99, max, and in
     intervals), and what nginx served meanwhile (requests by status,
     bytes);
  2. version 3 marked active with `rollout: 10`: the hosts that take it
     (computed here from each agent's host id, as the contract says)
     against those that did, and their times;
  3. two quiet intervals: requests and bytes nginx served (each a 304
     with no body), and each idle agent's RSS, PSS and anonymous memory;
then what the figures imply for 10,000 agents at a 5-minute interval.

Usage: benches/fleet.py [--smoke]   (--smoke: 5 agents, seconds)
Needs the release binary (PACKD_BIN, default target/release/packd) and
nginx (installed with apt-get when missing).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import common
from common import ensure_nginx, percentile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
SMOKE = "--smoke" in sys.argv
AGENTS = 5 if SMOKE else 100
INTERVAL = 5.0
ARTIFACT_BYTES = 256 * 1024
DEADLINE = 120


def packd(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"packd {' '.join(args)}: {out.stderr}")
    return out.stdout


class Nginx(common.Nginx):
    def __init__(self, root, work):
        super().__init__(root, work, "$request_uri $status $body_bytes_sent", connections=1024)

    def mark(self):
        """The log's length now: `since` counts the requests after it."""
        with open(self.log) as f:
            return len(f.readlines())

    def since(self, mark):
        """(requests by status, bytes of bodies, requests by path) after `mark`."""
        statuses, sent, paths = {}, 0, {}
        with open(self.log) as f:
            for line in f.readlines()[mark:]:
                uri, status, size = line.split()
                statuses[status] = statuses.get(status, 0) + 1
                paths[uri] = paths.get(uri, 0) + 1
                sent += int(size)
        return statuses, sent, paths


class Agent:
    def __init__(self, work, public):
        os.makedirs(work)
        self.db = os.path.join(work, "packd.redb")
        env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="warn")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db,
             "--data-dir", os.path.join(work, "data"), "--workers", "1",
             "--trusted-key", public],
            env=env, stdout=subprocess.PIPE, stderr=open(self.db + ".log", "ab"), text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"packd listening on (http://\S+)", line)
        if not m:
            raise SystemExit(f"packd did not start: {line!r}")
        self.base = m.group(1)
        self.host_id = self.call("GET", "/v1/host")["host_id"]

    def call(self, method, path, body=None):
        return common.call(self.base, KEY, method, path, body, timeout=30)

    def active(self, name):
        items = self.call("GET", f"/v1/packages?name={name}&status=active")["items"]
        return items[0]["version"] if items else None

    def memory(self):
        """RSS, PSS (the binary's pages shared among the agents counted
        once in all) and anonymous bytes, from smaps_rollup."""
        out = {}
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Anonymous"):
                    out[key] = int(rest.split()[0]) * 1024
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def takes(host_id, name, version, rollout):
    digest = hashlib.sha256(f"{host_id}/{name}/{version}".encode()).digest()
    return int.from_bytes(digest, "big") % 100 < rollout


def release(site, secret, version, sequence, flags):
    path = os.path.join(site, f"app-{version}.bin")
    with open(path, "wb") as f:
        f.write(hashlib.sha256(str(version).encode()).digest() * (ARTIFACT_BYTES // 32))
    packd("sign", "--secret-key", secret, "--name", "app", "--version", str(version), path)
    packd("channel", "publish", site, "--name", "stable", "--sequence", str(sequence),
          "--secret-key", secret, *flags)


def converge(agents, version, who, since):
    """Seconds from `since` until each agent of `who` has `version` active."""
    times = {}
    deadline = time.monotonic() + DEADLINE
    while len(times) < len(who) and time.monotonic() < deadline:
        for a in who:
            if a not in times and agents[a].active("app") == version:
                times[a] = time.monotonic() - since
        time.sleep(0.1)
    if len(times) < len(who):
        raise SystemExit(f"{len(who) - len(times)} agents never had app@{version} active")
    return list(times.values())


def show_times(label, times):
    print(f"  {label}: p50 {percentile(times, 50):.2f} s, p99 {percentile(times, 99):.2f} s, "
          f"max {max(times):.2f} s ({max(times) / INTERVAL:.2f} intervals)")


def show_served(label, served):
    statuses, sent, _ = served
    parts = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
    print(f"  {label}: {sum(statuses.values())} requests ({parts}), {sent} body bytes")


def main():
    ensure_nginx()
    work = tempfile.mkdtemp(prefix="packd-fleet-")
    # nginx's workers run as another user: the site must be readable.
    os.chmod(work, 0o755)
    site = os.path.join(work, "site")
    os.makedirs(site, mode=0o755)
    secret = os.path.join(work, "publisher.key")
    public = os.path.join(work, "publisher.pub")
    packd("keygen", "--output", os.path.join(work, "publisher"))
    release(site, secret, 1, 1, ["--active", "app@1"])
    nginx = Nginx(site, work)
    agents = []
    try:
        print(f"fleet: {AGENTS} agents (--workers 1), interval {INTERVAL:g} s, "
              f"artifacts of {ARTIFACT_BYTES // 1024} KiB, one nginx")
        started = time.monotonic()
        for i in range(AGENTS):
            agents.append(Agent(os.path.join(work, f"agent-{i:03}"), public))
        print(f"  {AGENTS} agents started in {time.monotonic() - started:.1f} s")
        interval = f"{int(INTERVAL)}s"
        for a in agents:
            a.call("POST", "/v1/channels",
                   {"url": nginx.url("channel.json"), "activate": "auto", "interval": interval})
        everyone = list(range(AGENTS))
        converge(agents, "1", everyone, time.monotonic())

        print("1. version 2, active, rollout 100")
        mark = nginx.mark()
        t0 = time.monotonic()
        release(site, secret, 2, 2, ["--active", "app@2"])
        times = converge(agents, "2", everyone, t0)
        show_times("time to active", times)
        served = nginx.since(mark)
        show_served("nginx served", served)
        per_release = served[1]

        print("2. version 3, active, rollout 10")
        chosen = [i for i in everyone if takes(agents[i].host_id, "app", "3", 10)]
        print(f"  the formula picks {len(chosen)} of {AGENTS} "
              f"(expected {AGENTS * 0.10:.1f} +- {2 * (AGENTS * 0.1 * 0.9) ** 0.5:.1f} at 2 sd)")
        mark = nginx.mark()
        t0 = time.monotonic()
        release(site, secret, 3, 3, ["--active", "app@3", "--rollout", "app@3=10"])
        if chosen:
            show_times("time to active (its wave)", converge(agents, "3", chosen, t0))
        # One more interval and a tenth after the wave: the others stayed.
        time.sleep(max(0.0, t0 + 2.2 * INTERVAL - time.monotonic()))
        on_three = [i for i in everyone if agents[i].active("app") == "3"]
        print(f"  agents with app@3 active after 2.2 intervals: {len(on_three)}, "
              f"exactly the chosen ones: {sorted(on_three) == sorted(chosen)}")
        show_served("nginx served", nginx.since(mark))

        print("3. quiet: two intervals")
        mark = nginx.mark()
        time.sleep(2 * INTERVAL)
        quiet = nginx.since(mark)
        show_served("nginx served", quiet)
        memory = [a.memory() for a in agents]
        for key, label in (("Rss", "RSS"), ("Pss", "PSS"), ("Anonymous", "anonymous")):
            xs = [m[key] for m in memory]
            print(f"  idle agent {label}: median {percentile(xs, 50) / 1e6:.1f} MB, "
                  f"max {max(xs) / 1e6:.1f} MB")
        print("  (RSS counts the binary's pages, which every agent shares; PSS counts "
              "them once across the fleet)")

        print("what it implies for 10,000 agents at a 5-minute interval")
        syncs = 10_000 / 300
        print(f"  at the origin: {syncs:.0f} requests/s while nothing changes "
              f"({quiet[1]} body bytes in the quiet intervals: a 304 has none)")
        per_agent = per_release / AGENTS
        print(f"  one release: {per_agent / 1024:.0f} KiB per agent "
              f"(document, signature, artifact), {10_000 * per_agent / 2**30:.2f} GiB in all, "
              f"spread over one interval (+-10 %)")
        print(f"  the goal: every agent within 2 intervals of the publish: "
              f"{'met' if max(times) <= 2 * INTERVAL else 'MISSED'} ({max(times):.2f} s)")
    finally:
        for a in agents:
            a.stop()
        nginx.stop()
        if not os.environ.get("FLEET_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
