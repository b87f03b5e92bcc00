#!/usr/bin/env python3
"""Download benchmark: packd fetching artifacts from a real web server
(Debian's nginx on loopback), against curl + sha256sum on the same file in
the same run.

Prints:
  1. a 1 GiB single file: packd's time from the download request to
     `succeeded` (fetched, hashed, synced, stored, placed), the baseline
     `curl -o FILE URL && sha256sum FILE`, their ratio, and packd's RSS
     growth during the download;
  2. kill -9 at about half way through a 512 MiB download, then a restart:
     the bytes nginx had sent before the kill, the offset packd resumed
     from (the Range nginx logged), and the bytes fetched again;
  3. 200 downloads of 1 MiB artifacts with the default 4 workers: files/s.

Usage: benches/downloads.py [--smoke]   (--smoke: small sizes, seconds)
Needs the release binary (PACKD_BIN, default target/release/packd) and
nginx (installed with apt-get when missing).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
SMOKE = "--smoke" in sys.argv
BIG = (16 if SMOKE else 1024) << 20
HALF_FILE = (8 if SMOKE else 512) << 20
MANY, MANY_SIZE = (20 if SMOKE else 200), 1 << 20
DEADLINE = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_nginx():
    if shutil.which("nginx"):
        return
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, capture_output=True)


def write_file(path, size, seed):
    """`size` bytes that differ per seed, and their SHA-256."""
    h = hashlib.sha256()
    block = hashlib.sha256(seed.encode()).digest() * (1 << 15)  # 1 MiB
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            # Vary each MiB so no two are alike.
            chunk = i.to_bytes(8, "little") + chunk[8:]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


class Nginx:
    def __init__(self, root, work):
        self.port = free_port()
        self.log = os.path.join(work, "access.log")
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
error_log {work}/error.log;
pid {work}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  log_format ranged '$request_uri "$http_range" $status $body_bytes_sent';
  access_log {self.log} ranged;
  sendfile on;
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", work],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start")

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def entries(self, name):
        """(range header, status, bytes sent) of each request for `name`."""
        out = []
        with open(self.log) as f:
            for line in f:
                m = re.match(r'/(\S+) "([^"]*)" (\d+) (\d+)', line)
                if m and m.group(1) == name:
                    out.append((m.group(2), int(m.group(3)), int(m.group(4))))
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Packd:
    def __init__(self, work):
        os.makedirs(work, exist_ok=True)
        self.work = work
        self.db = os.path.join(work, "packd.redb")
        self.start()

    def start(self):
        env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="warn")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db,
             "--data-dir", os.path.join(self.work, "data")],
            env=env, stdout=subprocess.PIPE, stderr=open(self.db + ".log", "ab"), text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"packd listening on (http://\S+)", line)
        if not m:
            raise SystemExit(f"packd did not start: {line!r}")
        self.base = m.group(1)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-API-Key", KEY)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=70) as r:
            return json.loads(r.read() or b"null")

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def create(self, name, url, sha):
        return self.call("POST", "/v1/packages",
                         {"name": name, "version": "1", "source": {"url": url, "sha256": sha}})["id"]

    def download(self, pid):
        return self.call("POST", f"/v1/packages/{pid}/download")["id"]

    def operation(self, op, wait=0):
        return self.call("GET", f"/v1/operations/{op}?wait={wait}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wait_done(packd, op, sample=None):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        o = packd.operation(op, wait=0 if sample else 5)
        if sample:
            sample()
        if o["state"] in ("succeeded", "failed", "cancelled"):
            return o
        if sample:
            time.sleep(0.05)
    raise SystemExit(f"operation {op} did not finish")


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"build the release binary first ({BIN})")
    ensure_nginx()
    work = tempfile.mkdtemp(prefix="packd-dl-bench-")
    # nginx's workers run as an unprivileged user: they must reach the files.
    os.chmod(work, 0o755)
    root = os.path.join(work, "www")
    os.makedirs(root, mode=0o755)
    nginx = Nginx(root, work)
    try:
        # 1. One big file, against curl + sha256sum.
        big_sha = write_file(os.path.join(root, "big.bin"), BIG, "big")
        out = os.path.join(work, "curl.bin")
        t = time.monotonic()
        subprocess.run(["curl", "-sf", "-o", out, nginx.url("big.bin")], check=True)
        got = subprocess.run(["sha256sum", out], check=True, capture_output=True, text=True).stdout.split()[0]
        baseline = time.monotonic() - t
        assert got == big_sha
        os.remove(out)
        packd = Packd(os.path.join(work, "p1"))
        pid = packd.create("big", nginx.url("big.bin"), big_sha)
        before = packd.rss()
        peak = [before]
        t = time.monotonic()
        op = packd.download(pid)
        done = wait_done(packd, op, sample=lambda: peak.append(packd.rss()))
        took = time.monotonic() - t
        assert done["state"] == "succeeded", done
        packd.stop()
        print(f"1. {mib(BIG)} single file: packd {took:.2f} s, curl + sha256sum {baseline:.2f} s "
              f"(ratio {took / baseline:.2f}); RSS grew {mib(max(peak) - before)} "
              f"(from {mib(before)})")

        # 2. kill -9 about half way, restart, resume.
        half_sha = write_file(os.path.join(root, "half.bin"), HALF_FILE, "half")
        packd = Packd(os.path.join(work, "p2"))
        pid = packd.create("half", nginx.url("half.bin"), half_sha)
        op = packd.download(pid)
        saved = 0
        deadline = time.monotonic() + DEADLINE
        while saved < HALF_FILE // 2 and time.monotonic() < deadline:
            saved = packd.operation(op).get("bytes_done") or 0
            time.sleep(0.01)
        packd.kill9()
        packd.start()
        done = wait_done(packd, op)
        assert done["state"] == "succeeded", done
        packd.stop()
        entries = nginx.entries("half.bin")
        sent_before = entries[0][2]
        resumed = [e for e in entries[1:] if e[0].startswith("bytes=")]
        offset = int(resumed[-1][0][len("bytes="):-1]) if resumed else 0
        print(f"2. kill -9 at {mib(saved)} saved of {mib(HALF_FILE)}: nginx had sent "
              f"{mib(sent_before)}, packd resumed at {mib(offset)} (Range), fetched again "
              f"{mib(max(0, sent_before - offset))}; checkpoint interval 8 MiB or 1 s")

        # 3. Many small artifacts with the default workers.
        packd = Packd(os.path.join(work, "p3"))
        ids = []
        for i in range(MANY):
            sha = write_file(os.path.join(root, f"small-{i}.bin"), MANY_SIZE, f"small-{i}")
            ids.append(packd.create(f"small-{i}", nginx.url(f"small-{i}.bin"), sha))
        t = time.monotonic()
        ops = [packd.download(pid) for pid in ids]
        for op in ops:
            assert wait_done(packd, op)["state"] == "succeeded"
        took = time.monotonic() - t
        packd.stop()
        print(f"3. {MANY} downloads of {mib(MANY_SIZE)} with 4 workers: {took:.2f} s, "
              f"{MANY / took:.1f} files/s")
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
