"""Uses the Python client generated from packd's description, unmodified:
creates a package, downloads it, waits for the operation, and handles a 409
through the generated `Problem` model. Run by .ci/clients against a live
server: python3 clients_check.py BASE_URL KEY (the generated package on
PYTHONPATH)."""

import sys

from packd_client import AuthenticatedClient
from packd_client.api.operations import get_operation
from packd_client.api.packages import create_package, download_package, get_package, update_package
from packd_client.models import (
    ErrorCode,
    NewPackage,
    Operation,
    Package,
    PackagePatch,
    Problem,
    SourceInput,
)

base, key = sys.argv[1:3]
client = AuthenticatedClient(base_url=base, token=key, prefix="", auth_header_name="X-API-Key")

created = create_package.sync(client=client, body=NewPackage(name="generated", version="1.0"))
assert isinstance(created, Package), created
print(f"created {created.name}@{created.version}: {created.status}")

op = download_package.sync(created.id, client=client)
assert isinstance(op, Operation), op
while op.state.value in ("queued", "running"):
    op = get_operation.sync(op.id, client=client, wait=30)
    assert isinstance(op, Operation), op
assert op.state.value == "succeeded", op
package = get_package.sync(created.id, client=client)
assert isinstance(package, Package) and package.status.value == "downloaded", package
print(f"downloaded: operation {op.id} {op.state.value}")

again = create_package.sync(client=client, body=NewPackage(name="generated", version="1.0"))
assert isinstance(again, Problem), again
assert again.status == 409 and again.code == ErrorCode.DUPLICATE, again
print(f"a second create: {again.status} {again.code.value}: {again.detail}")

# A source through the generated SourceInput model (it once came out as a
# duplicate type that could not be serialized), then a pin through the patch.
url = "https://releases.example.org/generated-2.0.tar.gz"
sourced = create_package.sync(
    client=client,
    body=NewPackage(name="generated", version="2.0", source=SourceInput(url=url, sha256="ab" * 32)),
)
assert isinstance(sourced, Package) and sourced.source and sourced.source.url == url, sourced
pinned = update_package.sync(sourced.id, client=client, body=PackagePatch(pinned=True))
assert isinstance(pinned, Package) and pinned.pinned, pinned
print(f"created {sourced.name}@{sourced.version} with a source, pinned: {pinned.pinned}")

# The event stream through the generated client's own HTTP client (its
# generated stream_events call reads the whole body, which never ends):
# streamed, a new package's event is read off it under a deadline.
with client.get_httpx_client().stream("GET", "/v1/events", timeout=20) as stream:
    assert stream.status_code == 200, stream.status_code
    streamed = create_package.sync(client=client, body=NewPackage(name="streamed-by-httpx", version="1.0"))
    assert isinstance(streamed, Package), streamed
    block = []
    for line in stream.iter_lines():
        block.append(line)
        if line == "" and "event: package" in block and any(str(streamed.id) in b for b in block):
            break
        if line == "":
            block = []
print(f"read the event of {streamed.name}@{streamed.version} off the stream: {block[0]}")
