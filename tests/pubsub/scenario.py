"""The official Pub/Sub Python client's whole scenario against a Herald binary.

Usage: scenario.py PROJECT. With PUBSUB_EMULATOR_HOST set:
- publishes 1,000 messages with 50 ordering keys through the batching
  publisher and receives them with the streaming-pull subscriber (callback
  API) on an ordered subscription, in per-key order, nacking every tenth
  message's first delivery (redelivered with delivery_attempt 2);
- a filtered subscription on the same topic gets only its key's messages;
- Seek of the ordered subscription to a time before the publishing: every
  message is received again;
- a message nacked on every delivery on a subscription with a dead-letter
  policy (5 attempts) arrives on the dead-letter topic with Pub/Sub's
  source attributes;
- on a subscription with exactly-once delivery, `ack_with_response()`
  confirms each ack, and acking a message again fails with the client's
  INVALID_ACK_ID (the server names the ack id in an ErrorInfo).
Prints a JSON line with what it saw. Exits non-zero on any mismatch.
"""

import datetime
import json
import sys
import threading
import time

from google.cloud import pubsub_v1
from google.protobuf import duration_pb2, timestamp_pb2

MESSAGES = 1000
KEYS = 50
FAST_RETRY = {
    "minimum_backoff": duration_pb2.Duration(nanos=100_000_000),
    "maximum_backoff": duration_pb2.Duration(nanos=100_000_000),
}


def receive(subscriber, path, callback, done, within, flow_control=()):
    """Runs `subscribe(path, callback)` until `done` is set or `within` s."""
    future = subscriber.subscribe(path, callback, flow_control=flow_control)
    ok = done.wait(within)
    future.cancel()
    try:
        future.result(timeout=30)
    except Exception:  # the cancelled stream
        pass
    return ok


def ordered_run(subscriber, path, nack_first):
    """Receives every message once acked; returns (attempts by n, per-key ack order)."""
    attempts, order = {}, {}
    lock, done = threading.Lock(), threading.Event()

    def callback(message):
        n, key = int(message.attributes["n"]), message.ordering_key
        if n < 0:  # the message of the unary Pull step, seen after the seek
            message.ack()
            return
        assert message.data == f"m-{n}".encode(), message.data
        with lock:
            if nack_first and n % 10 == 0 and message.delivery_attempt == 1:
                message.nack()
                return
            if n not in attempts:
                attempts[n] = message.delivery_attempt
                order.setdefault(key, []).append(n)
            message.ack()
            if len(attempts) == MESSAGES:
                done.set()

    ok = receive(subscriber, path, callback, done, 120)
    assert ok, f"received {len(attempts)} of {MESSAGES}"
    return attempts, order


def main():
    project = sys.argv[1]
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, "scenario")
    ordered = subscriber.subscription_path(project, "scenario-ordered")
    filtered = subscriber.subscription_path(project, "scenario-k3")
    publisher.create_topic(request={"name": topic})
    subscriber.create_subscription(request={
        "name": ordered, "topic": topic, "enable_message_ordering": True, "retry_policy": FAST_RETRY,
    })
    subscriber.create_subscription(request={
        "name": filtered, "topic": topic, "filter": 'attributes.key = "k3"',
    })

    before = timestamp_pb2.Timestamp()
    before.FromDatetime(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1))
    t0 = time.monotonic()
    futures = [
        publisher.publish(topic, f"m-{n}".encode(), ordering_key=f"k{n % KEYS}", n=str(n), key=f"k{n % KEYS}")
        for n in range(MESSAGES)
    ]
    ids = [f.result(timeout=60) for f in futures]
    publish_s = time.monotonic() - t0
    assert len(set(ids)) == MESSAGES

    attempts, order = ordered_run(subscriber, ordered, nack_first=True)
    for key, ns in order.items():
        assert ns == sorted(ns), f"key {key} out of order: {ns}"
    redelivered = sorted(n for n, a in attempts.items() if a == 2)
    assert redelivered == list(range(0, MESSAGES, 10)), redelivered
    assert all(a == 1 for n, a in attempts.items() if n % 10), attempts

    got_filtered, lock, done = set(), threading.Lock(), threading.Event()

    def only_k3(message):
        assert message.attributes["key"] == "k3", message.attributes
        with lock:
            got_filtered.add(int(message.attributes["n"]))
            if len(got_filtered) == MESSAGES // KEYS:
                done.set()
        message.ack()

    assert receive(subscriber, filtered, only_k3, done, 60), sorted(got_filtered)
    assert got_filtered == {n for n in range(MESSAGES) if n % KEYS == 3}

    # Unary Pull: what it returns stays leased until acknowledged.
    publisher.publish(topic, b"pulled", ordering_key="k3", n="-1", key="k3").result(timeout=30)
    pulled = subscriber.pull(request={"subscription": filtered, "max_messages": 5}, timeout=30)
    assert [m.message.data for m in pulled.received_messages] == [b"pulled"], pulled
    subscriber.acknowledge(request={"subscription": filtered, "ack_ids": [pulled.received_messages[0].ack_id]})

    subscriber.seek(request={"subscription": ordered, "time": before})
    again, again_order = ordered_run(subscriber, ordered, nack_first=False)
    assert len(again) == MESSAGES
    for key, ns in again_order.items():
        assert ns == sorted(ns), f"key {key} out of order after seek: {ns}"

    dead = dead_letter(publisher, subscriber, project)
    once = exactly_once(publisher, subscriber, project)
    subscriber.close()
    print(json.dumps({
        "published": len(ids),
        "publish_seconds": round(publish_s, 3),
        "redelivered": len(redelivered),
        "filtered": len(got_filtered),
        "after_seek": len(again),
        "dead_letter": dead,
        "exactly_once": once,
    }))


def dead_letter(publisher, subscriber, project):
    """A message that always fails moves to the dead-letter topic."""
    source = publisher.topic_path(project, "fragile")
    dlq = publisher.topic_path(project, "fragile-dlq")
    failing = subscriber.subscription_path(project, "fragile-sub")
    reader = subscriber.subscription_path(project, "fragile-dlq-sub")
    for t in (source, dlq):
        publisher.create_topic(request={"name": t})
    subscriber.create_subscription(request={
        "name": failing, "topic": source, "retry_policy": FAST_RETRY,
        "dead_letter_policy": {"dead_letter_topic": dlq, "max_delivery_attempts": 5},
    })
    subscriber.create_subscription(request={"name": reader, "topic": dlq})
    created = subscriber.get_subscription(request={"subscription": failing})
    assert created.dead_letter_policy.dead_letter_topic == dlq, created
    assert created.dead_letter_policy.max_delivery_attempts == 5, created
    publisher.publish(source, b"poison", reason="test").result(timeout=30)

    attempts, done = [], threading.Event()

    def always_nack(message):
        attempts.append(message.delivery_attempt)
        message.nack()

    moved = {}

    def on_dlq(message):
        moved.update(message.attributes)
        moved["data"] = message.data.decode()
        message.ack()
        done.set()

    dlq_future = subscriber.subscribe(reader, on_dlq)
    ok = receive(subscriber, failing, always_nack, done, 60)
    dlq_future.cancel()
    assert ok, f"nothing on the dead-letter topic after attempts {attempts}"
    assert attempts[:5] == [1, 2, 3, 4, 5], attempts
    assert moved["data"] == "poison" and moved["reason"] == "test", moved
    assert moved["CloudPubSubDeadLetterSourceDeliveryCount"] == "5", moved
    assert moved["CloudPubSubDeadLetterSourceSubscription"] == "fragile-sub", moved
    assert moved["CloudPubSubDeadLetterSourceSubscriptionProject"] == project, moved
    assert moved["CloudPubSubDeadLetterSourceTopicPublishTime"], moved
    return moved


def exactly_once(publisher, subscriber, project):
    """Acks confirmed one by one; a second ack of a message is invalid."""
    from google.api_core import exceptions
    from google.cloud.pubsub_v1.subscriber import exceptions as sub_exceptions

    topic = publisher.topic_path(project, "once")
    path = subscriber.subscription_path(project, "once-sub")
    publisher.create_topic(request={"name": topic})
    subscriber.create_subscription(request={
        "name": path, "topic": topic, "enable_exactly_once_delivery": True,
    })
    assert subscriber.get_subscription(request={"subscription": path}).enable_exactly_once_delivery
    for n in range(5):
        publisher.publish(topic, f"once-{n}".encode()).result(timeout=30)

    results, seconds, done = {}, [], threading.Event()

    def callback(message):
        results[message.data.decode()] = message.ack_with_response().result(timeout=30).name
        if len(results) < 5:
            return
        # The last message: every other ack is confirmed, so its second ack
        # travels alone (an ack sent in one call with another message's
        # would fail that one too: the clients apply the call's
        # INVALID_ARGUMENT to every ack id its ErrorInfo does not name).
        try:
            message.ack_with_response().result(timeout=30)
            seconds.append("SUCCESS")
        except sub_exceptions.AcknowledgeError as e:
            seconds.append(e.error_code.name)
        seconds.append(message.ack_id)
        done.set()

    # One message at a time.
    one = pubsub_v1.types.FlowControl(max_messages=1)
    assert receive(subscriber, path, callback, done, 60, one), results
    assert set(results.values()) == {"SUCCESS"} and len(results) == 5, results
    assert seconds[0] == "INVALID_ACK_ID", seconds
    ack_id = seconds[1]
    try:
        subscriber.acknowledge(request={"subscription": path, "ack_ids": [ack_id]})
        raise AssertionError("a second ack of a done message succeeded")
    except exceptions.InvalidArgument as e:
        assert e.reason == "EXACTLY_ONCE_ACKID_FAILURE", e
        assert e.metadata == {ack_id: "PERMANENT_FAILURE_INVALID_ACK_ID"}, e.metadata
    return {"confirmed": len(results), "second_ack": "INVALID_ACK_ID"}


if __name__ == "__main__":
    main()
