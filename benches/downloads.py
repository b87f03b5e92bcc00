#!/usr/bin/env python3
"""Download benchmark: packd fetching artifacts from a real web server
(Debian's nginx on loopback), against the machine's floor and curl on the
same file in the same run.

Prints:
  1. a 1 GiB single file, three rounds, each with its own baselines:
     - the floor: copying the file into the data directory's file system
       and syncing it (`dd conv=fsync`), and the fastest SHA-256 here
       (`openssl dgst -sha256`); overlapped, the floor is the larger;
     - `curl -o FILE URL && sha256sum FILE` (sequential) and
       `curl URL | tee FILE | sha256sum` (pipelined);
     - packd, from the download request to `succeeded` (fetched, hashed,
       synced, stored, placed), with where its time went (the
       `download installed` log line: fetch, store, unpack) and its RSS
       growth;
     then the medians of packd / floor and packd / pipelined curl;
  2. a 1 GiB `.tar.gz` of 1,000 files (incompressible, so the transfer is
     1 GiB too): packd against `curl URL | tar xz -C DIR`, three rounds;
  3. kill -9 at about half way through a 512 MiB download, then a restart:
     the bytes nginx had sent before the kill, the offset packd resumed
     from (the Range nginx logged), and the bytes fetched again;
  4. 200 downloads of 1 MiB artifacts with the default 4 workers: files/s;
  5. the cost of checking a signature: the 1 GiB file downloaded by a packd
     that trusts a key (made and used by `packd keygen` and `packd sign`)
     and by one that trusts none, alternately, three rounds each: the
     medians of the wall time and of the RSS growth.

Usage: benches/downloads.py [--smoke]   (--smoke: small sizes, seconds)
Needs the release binary (PACKD_BIN, default target/release/packd),
nginx (installed with apt-get when missing), curl, openssl and tar.
"""

import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import common
from common import ensure_nginx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", os.path.join(ROOT, "target", "release", "packd"))
KEY = "bench-admin-key-0123456789abcdefghijklmnop"
SMOKE = "--smoke" in sys.argv
BIG = (16 if SMOKE else 1024) << 20
HALF_FILE = (8 if SMOKE else 512) << 20
MANY, MANY_SIZE = (20 if SMOKE else 200), 1 << 20
TAR_FILES = 20 if SMOKE else 1000
ROUNDS = 3
DEADLINE = 600


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


class Nginx(common.Nginx):
    def __init__(self, root, work):
        super().__init__(root, work, '$request_uri "$http_range" $status $body_bytes_sent')

    def entries(self, name):
        """(range header, status, bytes sent) of each request for `name`."""
        out = []
        with open(self.log) as f:
            for line in f:
                m = re.match(r'/(\S+) "([^"]*)" (\d+) (\d+)', line)
                if m and m.group(1) == name:
                    out.append((m.group(2), int(m.group(3)), int(m.group(4))))
        return out


class Packd:
    def __init__(self, work, args=()):
        os.makedirs(work, exist_ok=True)
        self.work = work
        self.args = list(args)
        self.db = os.path.join(work, "packd.redb")
        self.start()

    def start(self):
        env = dict(os.environ, PACKD_BOOTSTRAP_KEY=KEY, PACKD_LOG="warn,packd::files=info")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--db", self.db,
             "--data-dir", os.path.join(self.work, "data")] + self.args,
            env=env, stdout=subprocess.PIPE, stderr=open(self.db + ".log", "ab"), text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"packd listening on (http://\S+)", line)
        if not m:
            raise SystemExit(f"packd did not start: {line!r}")
        self.base = m.group(1)

    def call(self, method, path, body=None):
        return common.call(self.base, KEY, method, path, body, timeout=70)

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def create(self, name, url, sha, signature=None):
        source = {"url": url, "sha256": sha}
        if signature:
            source["signature"] = signature
        return self.call("POST", "/v1/packages",
                         {"name": name, "version": "1", "source": source})["id"]

    def download(self, pid):
        return self.call("POST", f"/v1/packages/{pid}/download")["id"]

    def operation(self, op, wait=0):
        return self.call("GET", f"/v1/operations/{op}?wait={wait}")

    def phases(self):
        """fetch, store and unpack milliseconds of the last download."""
        with open(self.db + ".log", errors="replace") as f:
            lines = [l for l in f if "download installed" in l]
        if not lines:
            return None
        return {k: float(v) for k, v in re.findall(r"(\w+)_ms=([\d.]+)", lines[-1])}

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


def timed(argv):
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def median(xs):
    return sorted(xs)[len(xs) // 2]


def fmt_phases(p):
    if not p:
        return "no phase figures"
    return ", ".join(f"{k} {v / 1000:.2f} s" for k, v in p.items())


def write_tarball(path, files, size):
    """A .tar.gz of `files` files of `size` random bytes each (gzip level
    1 stores them: what crosses the wire is as large as what lands)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(files):
            info = tarfile.TarInfo(f"many/file-{i:04}.bin")
            info.size = size
            data = os.urandom(size)
            tar.addfile(info, io.BytesIO(data))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def packd_download(work, url, sha, signature=None, args=()):
    """A fresh packd downloads `url`: seconds to `succeeded`, RSS growth,
    and where the time went."""
    packd = Packd(work, args)
    try:
        pid = packd.create("pkg", url, sha, signature)
        before = packd.rss()
        peak = [before]
        t = time.monotonic()
        op = packd.download(pid)
        done = wait_done(packd, op, sample=lambda: peak.append(packd.rss()))
        took = time.monotonic() - t
        assert done["state"] == "succeeded", done
        return took, max(peak) - before, packd.phases()
    finally:
        packd.stop()
        shutil.rmtree(work, ignore_errors=True)


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
        # 1. One big file, against the floor and curl, in rounds.
        big = os.path.join(root, "big.bin")
        big_sha = write_file(big, BIG, "big")
        floors, vs_pipe, growths = [], [], []
        for r in range(ROUNDS):
            copy = timed(["dd", f"if={big}", f"of={work}/floor.bin", "bs=4M", "conv=fsync",
                          "status=none"])
            os.remove(f"{work}/floor.bin")
            hashed = timed(["openssl", "dgst", "-sha256", big])
            floor = max(copy, hashed)
            out = os.path.join(work, "curl.bin")
            seq = timed(["sh", "-c", f"curl -sf -o {out} {nginx.url('big.bin')} && sha256sum {out}"])
            os.remove(out)
            pipe = timed(["sh", "-c", f"curl -sf {nginx.url('big.bin')} | tee {out} | sha256sum"])
            os.remove(out)
            took, growth, phases = packd_download(os.path.join(work, f"p1-{r}"),
                                                  nginx.url("big.bin"), big_sha)
            floors.append(took / floor)
            vs_pipe.append(took / pipe)
            growths.append(growth)
            print(f"1.{r + 1} {mib(BIG)} single file: floor {floor:.2f} s (copy + sync {copy:.2f} s, "
                  f"openssl sha256 {hashed:.2f} s); curl + sha256sum {seq:.2f} s, pipelined "
                  f"{pipe:.2f} s; packd {took:.2f} s ({fmt_phases(phases)}), RSS +{mib(growth)}",
                  flush=True)
        print(f"1.  median packd / floor {median(floors):.2f} (goal: at most 1.5), "
              f"packd / pipelined curl {median(vs_pipe):.2f} (goal: under 0.6), "
              f"largest RSS growth {mib(max(growths))} (goal: under 32 MiB)", flush=True)

        # 2. A .tar.gz of many files, against curl | tar xz.
        tgz = os.path.join(root, "many.tar.gz")
        tgz_sha = write_tarball(tgz, TAR_FILES, BIG // TAR_FILES)
        ratios = []
        for r in range(ROUNDS):
            into = os.path.join(work, "untarred")
            os.makedirs(into)
            curl_tar = timed(["sh", "-c", f"curl -sf {nginx.url('many.tar.gz')} | tar xzf - -C {into}"])
            shutil.rmtree(into)
            took, growth, phases = packd_download(os.path.join(work, f"p2-{r}"),
                                                  nginx.url("many.tar.gz"), tgz_sha)
            ratios.append(took / curl_tar)
            print(f"2.{r + 1} {mib(os.path.getsize(tgz))} .tar.gz of {TAR_FILES} files: curl | tar xz "
                  f"{curl_tar:.2f} s; packd {took:.2f} s ({fmt_phases(phases)}), RSS +{mib(growth)}",
                  flush=True)
        print(f"2.  median packd / (curl | tar xz) {median(ratios):.2f} (goal: at most 2)", flush=True)

        # 3. kill -9 about half way, restart, resume.
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
        print(f"3. kill -9 at {mib(saved)} saved of {mib(HALF_FILE)}: nginx had sent "
              f"{mib(sent_before)}, packd resumed at {mib(offset)} (Range), fetched again "
              f"{mib(max(0, sent_before - offset))}; checkpoint interval 32 MiB or 1 s, saved at most every 0.1 s")

        # 4. Many small artifacts with the default workers.
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
        print(f"4. {MANY} downloads of {mib(MANY_SIZE)} with 4 workers: {took:.2f} s, "
              f"{MANY / took:.1f} files/s", flush=True)

        # 5. The signature's check, against none, alternately.
        subprocess.run([BIN, "keygen", "--output", f"{work}/publisher"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([BIN, "sign", "--secret-key", f"{work}/publisher.key", "--name", "pkg",
                        "--version", "1", big], check=True, stdout=subprocess.DEVNULL)
        with open(big + ".minisig") as f:
            signature = f.read()
        trusted = ["--trusted-key", f"{work}/publisher.pub"]
        plain, signed, plain_rss, signed_rss = [], [], [], []
        for r in range(ROUNDS):
            took, growth, _ = packd_download(os.path.join(work, f"p5-plain-{r}"),
                                             nginx.url("big.bin"), big_sha)
            plain.append(took)
            plain_rss.append(growth)
            took, growth, _ = packd_download(os.path.join(work, f"p5-signed-{r}"),
                                             nginx.url("big.bin"), big_sha, signature, trusted)
            signed.append(took)
            signed_rss.append(growth)
        print(f"5. {mib(BIG)} with a signature checked: {median(signed):.2f} s, without "
              f"{median(plain):.2f} s (medians; {100 * (median(signed) / median(plain) - 1):+.1f} %, "
              f"goal under +5 %); RSS growth {mib(median(signed_rss))} against "
              f"{mib(median(plain_rss))} (goal: at most 1 MiB more)", flush=True)
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
