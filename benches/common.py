"""What the Python benchmarks share: percentiles and their one-line
summary, a free loopback port, and nginx on loopback serving a directory
(installed from Debian when missing), whose access log each benchmark
reads in its own format."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request


def percentile(values, p):
    """The nearest-rank percentile `p` (0 to 100) of `values`."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summary(values_ms):
    return (f"p50 {percentile(values_ms, 50):.2f} ms, p99 {percentile(values_ms, 99):.2f} ms, "
            f"max {max(values_ms):.2f} ms")


def call(base, key, method, path, body=None, timeout=30):
    """One API call with `key`: the JSON answer (None for an empty body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("X-API-Key", key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_nginx():
    if shutil.which("nginx"):
        return
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, capture_output=True)


class Nginx:
    """nginx serving `root` on a loopback port, logging each request as
    `log_format` says (an nginx log_format string)."""

    def __init__(self, root, work, log_format, connections=256):
        self.port = free_port()
        self.log = os.path.join(work, "access.log")
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
error_log {work}/error.log;
pid {work}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
  log_format bench '{log_format}';
  access_log {self.log} bench;
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

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
