#!/usr/bin/env python3
"""Event stream benchmark (GET /v1/events), on loopback.

Prints:
  1. delivery: 100 subscribers on unfiltered streams while 500 package
     edits are committed one after the other; for each event and each
     subscriber, the time from the change's commit (`updated_at`, taken by
     the server just before it commits) to the event read by the
     subscriber: p50, p99 and max, against the baseline of the same run,
     the edit's own round trip (PATCH sent to answer read);
  2. memory: packd's RSS before and with 1,000 idle subscribers.

Usage: benches/events.py [--smoke]   (--smoke: 10 subscribers, 50 edits, 100 idle)
Needs the release binary (PACKD_BIN, default target/release/packd).
"""

import json
import os
import re
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
from datetime import datetime

from common import percentile, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
SMOKE = "--smoke" in sys.argv
SUBSCRIBERS = 10 if SMOKE else 100
EDITS = 50 if SMOKE else 500
IDLE = 100 if SMOKE else 1000


def epoch(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def subscribe(port):
    s = socket.create_connection(("127.0.0.1", port))
    # HTTP/1.0: the stream comes as it is, ended by the close, with no
    # chunk framing to take apart.
    s.sendall(f"GET /v1/events HTTP/1.0\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode())
    return s


class Readers:
    """Reads every subscriber's socket in one thread and stamps each
    package event with its arrival time."""

    def __init__(self, sockets):
        self.sel = selectors.DefaultSelector()
        self.buffers = {}
        self.arrivals = []  # (arrival, updated_at)
        for s in sockets:
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.buffers[s] = b""
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        pattern = re.compile(rb'"updated_at":"([^"]+)"')
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(1 << 16)
                except BlockingIOError:
                    continue
                now = time.time()
                buf = self.buffers[s] + data
                *events, rest = buf.split(b"\n\n")
                self.buffers[s] = rest
                for e in events:
                    if b"event: package" in e:
                        m = pattern.search(e)
                        if m:
                            self.arrivals.append((now, m.group(1).decode()))


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"build the release binary first ({BIN})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    work = tempfile.mkdtemp(prefix="packd-events-bench-")
    env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="warn")
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:0", "--db", os.path.join(work, "packd.redb"),
         "--data-dir", os.path.join(work, "data"), "--max-streams", str(IDLE + SUBSCRIBERS + 10),
         "--max-connections", str(IDLE + SUBSCRIBERS + 100), "--max-connections-per-client", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        m = re.match(r"packd listening on http://127.0.0.1:(\d+)", proc.stdout.readline())
        port = int(m.group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def call(method, path, body=None):
            headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            r = conn.getresponse()
            return json.loads(r.read() or b"null")

        pid = call("POST", "/v1/packages", {"name": "bench", "version": "0"})["id"]

        # 1. Delivery to 100 subscribers.
        sockets = [subscribe(port) for _ in range(SUBSCRIBERS)]
        time.sleep(0.5)
        readers = Readers(sockets)
        round_trips = []
        for i in range(EDITS):
            t = time.perf_counter()
            call("PATCH", f"/v1/packages/{pid}", {"version": str(i + 1)})
            round_trips.append((time.perf_counter() - t) * 1000)
        deadline = time.time() + 30
        while len(readers.arrivals) < EDITS * SUBSCRIBERS and time.time() < deadline:
            time.sleep(0.05)
        readers.stop = True
        readers.thread.join()
        latencies = [(arrival - epoch(updated)) * 1000 for arrival, updated in readers.arrivals]
        got = len(latencies)
        for s in sockets:
            s.close()

        # 2. RSS with many idle subscribers.
        time.sleep(0.5)
        before = rss(proc.pid)
        idle = [subscribe(port) for _ in range(IDLE)]
        time.sleep(1.0)
        with_idle = rss(proc.pid)
        for s in idle:
            s.close()

        print(f"event stream, {SUBSCRIBERS} subscribers, {EDITS} committed edits:")
        print(f"1. commit to event read, {got} of {EDITS * SUBSCRIBERS} events: {summary(latencies)}")
        print(f"   baseline, the edit's round trip (PATCH to answer): {summary(round_trips)}")
        print(f"   goal p99 < 10 ms: {'met' if percentile(latencies, 99) < 10 else 'NOT met'}")
        print(f"2. RSS {before / 2**20:.1f} MiB, with {IDLE} idle subscribers {with_idle / 2**20:.1f} MiB "
              f"(+{(with_idle - before) / 2**20:.1f} MiB, {(with_idle - before) / IDLE / 1024:.1f} KiB each)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
