"""Minimal Herald consumer: joins the `billing` group of the `orders` topic
over one Consume stream, prints every event and acknowledges it on the same
stream. Stop it with Ctrl-C.

Generate the stubs first (see publisher.py), then run
`python examples/python/consumer.py [HOST:PORT]` (default 127.0.0.1:50051,
or HERALD_ADDR).
"""

import os
import queue
import sys
from pathlib import Path

import grpc

# The generated modules (package herald.v1) live in gen/ next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
from herald.v1 import admin_pb2, admin_pb2_grpc, subscriber_pb2, subscriber_pb2_grpc  # noqa: E402


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
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        subscriber = subscriber_pb2_grpc.SubscriberServiceStub(channel)

        # Subscribe alone would create the group at the end of the topic (only
        # new events). Create it first to start from the earliest event; on
        # later runs it already exists and keeps its progress.
        try:
            admin.CreateGroup(admin_pb2.CreateGroupRequest(group=admin_pb2.Group(
                topic="orders",
                name="billing",
                start_position=admin_pb2.Position(edge=admin_pb2.EDGE_EARLIEST),
            )), timeout=10)
            print("created group billing")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

        # One bidirectional stream: the first request opens the subscription,
        # later ones ack deliveries (no round trip each). The server keeps up
        # to max_in_flight deliveries out, in batches of at most max_batch.
        requests = queue.Queue()
        requests.put(subscriber_pb2.ConsumeRequest(open=subscriber_pb2.ConsumeOpen(
            topic="orders", group="billing", consumer="python-example",
            max_in_flight=100, max_batch=20)))

        def outgoing():
            while (request := requests.get()) is not None:
                yield request

        stream = subscriber.Consume(outgoing())
        print(f"waiting for events on orders/billing at {address}")
        try:
            for response in stream:
                for delivery in response.deliveries:
                    event = delivery.event
                    print(f"{event.type} #{event.offset} key={event.key} "
                          f"attempt={delivery.delivery_attempt}: {event.data.decode(errors='replace')}")
                # Handle the events, then acknowledge them. An event that is not
                # acked before the group's ack deadline is delivered again.
                if response.deliveries:
                    requests.put(subscriber_pb2.ConsumeRequest(ack=subscriber_pb2.ConsumeAck(
                        ack_ids=[d.ack_id for d in response.deliveries])))
        except KeyboardInterrupt:
            stream.cancel()
        finally:
            requests.put(None)


if __name__ == "__main__":
    main()
