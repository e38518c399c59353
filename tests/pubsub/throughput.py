"""Throughput of the official Pub/Sub Python client against Herald.

Usage: throughput.py [N] [SIZE] [--exactly-once]. With PUBSUB_EMULATOR_HOST
set: creates a fresh topic and subscription, publishes N messages (20,000)
of SIZE bytes (256) through the batching publisher (default batch settings)
and waits for every future, then receives and acks them with `subscribe()`
(flow control 1,000 messages; with --exactly-once the subscription has
exactly-once delivery and the run ends when every ack is confirmed). Prints a
JSON line with both rates. Not a test: the numbers in the notes come from it.
"""

import json
import sys
import threading
import time
import uuid

from google.cloud import pubsub_v1


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 20_000
    size = int(args[1]) if len(args) > 1 else 256
    once = "--exactly-once" in sys.argv
    run = uuid.uuid4().hex[:8]
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path("bench", f"tp-{run}")
    path = subscriber.subscription_path("bench", f"tp-{run}")
    publisher.create_topic(request={"name": topic})
    subscriber.create_subscription(request={
        "name": path, "topic": topic, "ack_deadline_seconds": 60,
        "enable_exactly_once_delivery": once,
    })

    data = b"x" * size
    t0 = time.monotonic()
    futures = [publisher.publish(topic, data) for _ in range(n)]
    for f in futures:
        f.result(timeout=120)
    publish_s = time.monotonic() - t0

    seen, confirmations = set(), []
    lock, done = threading.Lock(), threading.Event()

    def callback(message):
        if once:
            confirmations.append(message.ack_with_response())
        else:
            message.ack()
        with lock:
            seen.add(message.message_id)
            if len(seen) == n:
                done.set()

    t1 = time.monotonic()
    future = subscriber.subscribe(
        path, callback, flow_control=pubsub_v1.types.FlowControl(max_messages=1000)
    )
    ok = done.wait(600)
    for c in confirmations:
        c.result(timeout=60)
    receive_s = time.monotonic() - t1
    future.cancel()
    try:
        future.result(timeout=30)
    except Exception:  # the cancelled stream
        pass
    subscriber.close()
    assert ok, f"received {len(seen)} of {n}"
    print(json.dumps({
        "messages": n,
        "bytes": size,
        "exactly_once": once,
        "publish_per_s": round(n / publish_s),
        "receive_ack_per_s": round(n / receive_s),
    }))


if __name__ == "__main__":
    main()
