#!/usr/bin/env python3
"""Retention benchmark: 1,000 downloaded versions of one name, then the
activation of a newer one with `--keep-downloaded 3`, which retires 997
of them (statuses back to `created` and their removals journaled, in the
activation's completion transaction; their files go in the background).

Prints, each as p50 / p99 / max:
  1. creates of other packages, one client, sequential: a baseline of
     three seconds with nothing else happening, then during the activation
     and the removals after it;
  2. the activation's time (from its start to the commit that retired the
     versions), the time until every retired version's files are gone,
     and what is left on disk.

Usage: benches/retention.py [--smoke]   (--smoke: 50 versions)
Needs the release binary (PACKD_BIN, default target/release/packd).
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from common import percentile, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
VERSIONS = 50 if "--smoke" in sys.argv else 1000
KEEP = 3
DEADLINE = 600


class Client:
    def __init__(self, base):
        self.conn = http.client.HTTPConnection(base, timeout=60)

    def call(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        headers = {"X-API-Key": KEY}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {raw[:200]!r}")
        return json.loads(raw or b"null")


def wait(client, op):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        o = client.call("GET", f"/v1/operations/{op}?wait=10")
        if o["state"] in ("succeeded", "failed", "cancelled"):
            return o
    raise SystemExit(f"operation {op} did not finish")


def creates(base, stop, out, prefix):
    client = Client(base)
    n = 0
    while not stop.is_set():
        t = time.perf_counter()
        client.call("POST", "/v1/packages", {"name": f"{prefix}-{n}", "version": "1"})
        out.append((time.perf_counter() - t) * 1000)
        n += 1


def main():
    work = tempfile.mkdtemp(prefix="packd-retention-")
    files = os.path.join(work, "files")
    os.makedirs(files)
    db = os.path.join(work, "packd.redb")
    data = os.path.join(work, "data")
    env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="warn")
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:0", "--db", db, "--data-dir", data,
         "--allow-file-sources", "--keep-downloaded", str(KEEP), "--min-free-space", "0"],
        env=env, stdout=subprocess.PIPE, stderr=open(db + ".log", "ab"), text=True)
    try:
        m = re.match(r"packd listening on http://(\S+)", proc.stdout.readline())
        if not m:
            raise SystemExit("packd did not start")
        base = m.group(1)
        client = Client(base)
        print(f"retention: {VERSIONS} downloaded versions of one name, then an activation "
              f"with --keep-downloaded {KEEP}")
        ids = []
        started = time.monotonic()
        for i in range(VERSIONS + 1):
            path = os.path.join(files, f"app-{i}")
            body = f"app version {i}\n".encode()
            with open(path, "wb") as f:
                f.write(body)
            p = client.call("POST", "/v1/packages", {
                "name": "app", "version": f"1.{i}",
                "source": {"url": f"file://{path}", "sha256": hashlib.sha256(body).hexdigest()}})
            ids.append(p["id"])
        ops = [client.call("POST", f"/v1/packages/{i}/download")["id"] for i in ids]
        for op in ops:
            if wait(client, op)["state"] != "succeeded":
                raise SystemExit("a download failed")
        print(f"  set up in {time.monotonic() - started:.1f} s")

        stop, baseline = threading.Event(), []
        t = threading.Thread(target=creates, args=(base, stop, baseline, "baseline"))
        t.start()
        time.sleep(3)
        stop.set()
        t.join()

        stop, during = threading.Event(), []
        t = threading.Thread(target=creates, args=(base, stop, during, "during"))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        op = client.call("POST", f"/v1/packages/{ids[-1]}/activate")["id"]
        done = wait(client, op)
        activated = time.monotonic() - t0
        packages = os.path.join(data, "packages", "app")
        deadline = time.monotonic() + DEADLINE
        while len(os.listdir(packages)) > KEEP and time.monotonic() < deadline:
            time.sleep(0.05)
        removed = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        t.join()
        left = len(os.listdir(packages))
        print(f"1. creates, baseline (nothing else running): {summary(baseline)} ({len(baseline)} requests)")
        print(f"   creates during the activation and the removals: {summary(during)} ({len(during)} requests)")
        print(f"   p99 during / p99 baseline: {percentile(during, 99) / percentile(baseline, 99):.2f}")
        print(f"2. the activation: {done['state']} in {activated * 1000:.0f} ms "
              f"(retiring {VERSIONS + 1 - KEEP} versions in its completion); "
              f"every retired version's files gone after {removed:.2f} s; "
              f"{left} versions left on disk")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
