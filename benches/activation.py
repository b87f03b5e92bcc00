#!/usr/bin/env python3
"""Activation benchmark: 1,000 switches of active/<name> between two
downloaded versions of a package with files, no hook.

Prints, each as p50 / p99 / max over the switches:
  1. packd, server side: the link switch plus the commit, as the worker logs
     it (`elapsed_ms` of "operation stopped": from the start of the work,
     through the symlink, rename and directory fsync, to the completion
     committed);
  2. packd, client side: POST /v1/packages/{id}/activate to the answer of
     GET /v1/operations/{id}?wait=10 saying `succeeded`: the enqueue commit,
     the claim commit, the link switch, the completion commit and two HTTP
     round trips, on one keep-alive connection;
  3. the baselines of the same run: the same link switch done by this
     script (symlink beside, rename over, fsync of the directory), and a
     GET /healthz round trip on the same connection.

Usage: benches/activation.py [--smoke]   (--smoke: 50 switches)
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
import time

from common import percentile, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
SWITCHES = 50 if "--smoke" in sys.argv else 1000


class Packd:
    def __init__(self, work):
        self.db = os.path.join(work, "packd.redb")
        self.log = self.db + ".log"
        env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="info", PACKD_LOG_FORMAT="json")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db,
             "--data-dir", os.path.join(work, "data"), "--allow-file-sources"],
            env=env, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"packd listening on http://(\S+)", line)
        if not m:
            raise SystemExit(f"packd did not start: {line!r}")
        host, port = m.group(1).rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method, path, body=None, key=True):
        headers = {"X-API-Key": KEY} if key else {}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {payload!r}")
        return json.loads(payload or b"null")

    def run(self, pid, kind):
        op = self.call("POST", f"/v1/packages/{pid}/{kind}")
        while op["state"] in ("queued", "running"):
            op = self.call("GET", f"/v1/operations/{op['id']}?wait=10")
        if op["state"] != "succeeded":
            raise SystemExit(f"{kind} did not succeed: {op}")
        return op

    def elapsed_ms(self):
        """Operation id -> the worker's `elapsed_ms` of its last attempt."""
        out = {}
        with open(self.log) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") == "operation stopped":
                    out[entry.get("operation")] = float(entry["elapsed_ms"])
        return out

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait()


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"build the release binary first ({BIN})")
    work = tempfile.mkdtemp(prefix="packd-activation-bench-")
    try:
        packd = Packd(work)
        ids = []
        for version in ("1.0", "2.0"):
            artifact = os.path.join(work, f"tool-{version}")
            body = f"tool {version}\n".encode()
            with open(artifact, "wb") as f:
                f.write(body)
            pid = packd.call("POST", "/v1/packages", {
                "name": "tool", "version": version,
                "source": {"url": f"file://{artifact}", "sha256": hashlib.sha256(body).hexdigest()},
            })["id"]
            packd.run(pid, "download")
            ids.append(pid)

        client, health, ops = [], [], []
        for i in range(SWITCHES):
            t = time.perf_counter()
            packd.call("GET", "/healthz", key=False)
            health.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            op = packd.run(ids[i % 2], "activate")
            client.append((time.perf_counter() - t) * 1000)
            ops.append(op["id"])
        link = os.path.join(work, "data", "active", "tool")
        expected = "../packages/tool/" + ("2.0" if SWITCHES % 2 == 0 else "1.0")
        assert os.readlink(link) == expected, os.readlink(link)
        packd.stop()
        logged = packd.elapsed_ms()
        server = [logged[op] for op in ops]

        # The file-system floor: the same switch, done here.
        floor_dir = os.path.join(work, "floor")
        os.makedirs(floor_dir)
        floor = []
        fd = os.open(floor_dir, os.O_RDONLY)
        for i in range(SWITCHES):
            t = time.perf_counter()
            tmp = os.path.join(floor_dir, f".tool.link-{i}")
            os.symlink(f"../packages/tool/{i % 2}", tmp)
            os.rename(tmp, os.path.join(floor_dir, "tool"))
            os.fsync(fd)
            floor.append((time.perf_counter() - t) * 1000)
        os.close(fd)

        print(f"{SWITCHES} activations switching between two versions (no hook):")
        print(f"1. packd, link switch plus commit:      {summary(server)}")
        print(f"2. packd, request to succeeded (HTTP):  {summary(client)}")
        print(f"3. baseline, symlink+rename+fsync here: {summary(floor)}")
        print(f"   baseline, GET /healthz round trip:   {summary(health)}")
        print(f"   goal p99 < 5 ms (1.): {'met' if percentile(server, 99) < 5 else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
