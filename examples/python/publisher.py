"""Minimal Herald publisher: sends a batch of OrderPlaced events to the
`orders` topic.

Generate the stubs once, from the repository root:

    mkdir -p examples/python/gen
    python -m grpc_tools.protoc -I proto --python_out=examples/python/gen \
        --grpc_python_out=examples/python/gen proto/herald/v1/*.proto

then run `python examples/python/publisher.py [HOST:PORT]` (default
127.0.0.1:50051, or HERALD_ADDR). Set HERALD_CA (a CA file) for TLS and
HERALD_TOKEN for a server that requires authentication.
"""

import json
import os
import sys
from pathlib import Path

import grpc

# The generated modules (package herald.v1) live in gen/ next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
from herald.v1 import event_pb2, publisher_pb2, publisher_pb2_grpc  # noqa: E402


def connect(address):
    """Plaintext, or TLS when HERALD_CA names the CA that signed the server's
    certificate; then HERALD_TOKEN (from `herald auth token create`) goes
    with every call as `authorization: Bearer <token>` (grpcio sends call
    credentials over TLS only)."""
    ca = os.environ.get("HERALD_CA")
    if not ca:
        return grpc.insecure_channel(address)
    with open(ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    token = os.environ.get("HERALD_TOKEN")
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, credentials)


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HERALD_ADDR", "127.0.0.1:50051")
    with connect(address) as channel:
        publisher = publisher_pb2_grpc.PublisherServiceStub(channel)
        events = [
            event_pb2.Event(
                # Leave `id` empty for a server-assigned UUIDv7, or set your own
                # so that a retried publish is recognised as a duplicate.
                type="OrderPlaced",
                source="examples/python",
                key=f"order-{n}",  # the ordering key: typically the aggregate id
                content_type="application/json",
                data=json.dumps({"order_id": f"order-{n}", "amount_cents": n * 1250}).encode(),
            )
            for n in range(1, 4)
        ]
        # One request is one all-or-nothing batch; the reply comes once it is
        # durably stored. The topic is created on first use.
        response = publisher.Publish(publisher_pb2.PublishRequest(topic="orders", events=events), timeout=10)
        for result in response.results:
            print(f"published {result.id} at offset {result.offset}")


if __name__ == "__main__":
    main()
