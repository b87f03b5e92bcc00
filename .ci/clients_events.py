"""A generated client need not hang on /v1/events: openapi-generator's
python client, unmodified, opens the stream through the call that does not
read the body up front (`stream_events_without_preload_content`), creates
a package through its own create call, and reads that package's event off
the stream, all under a deadline. Its plain `stream_events` would wait for
the end of a body that never ends, which is why the description and the
README point at this form. Run by .ci/clients against a live server:
python3 clients_events.py BASE_URL KEY (the generated package on
PYTHONPATH)."""

import sys
import time

import openapi_client
from openapi_client.api.operations_api import OperationsApi
from openapi_client.api.packages_api import PackagesApi
from openapi_client.models import NewPackage

DEADLINE = 20

base, key = sys.argv[1:3]
config = openapi_client.Configuration(host=base)
config.api_key["ApiKey"] = key
client = openapi_client.ApiClient(config)

started = time.monotonic()
# (connect, read) timeouts: a read that waits past 20 s fails the check
# instead of hanging it; the server's heartbeat comes every 15 s.
stream = OperationsApi(client).stream_events_without_preload_content(_request_timeout=(5, DEADLINE))
print(f"stream open: {stream.status} {stream.headers.get('content-type')} "
      f"after {time.monotonic() - started:.2f} s")
assert stream.status == 200, stream.status

created = PackagesApi(client).create_package(NewPackage(name="streamed-by-generator", version="1.0"))
print(f"created {created.name}@{created.version}")

seen = None
buffered = b""
while time.monotonic() - started < DEADLINE:
    chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(1)
    if not chunk:
        break
    buffered += chunk
    for block in buffered.split(b"\n\n")[:-1]:
        lines = block.decode().splitlines()
        if "event: package" in lines and any(str(created.id) in line for line in lines):
            seen = block.decode()
            break
    if seen:
        break
stream.release_conn()
assert seen, f"no event of the new package within {DEADLINE} s: {buffered[-500:]!r}"
print(f"read its event off the stream after {time.monotonic() - started:.2f} s: "
      f"{seen.splitlines()[0]}")
