"""The official Pub/Sub Python subscriber against Herald (PUBSUB_EMULATOR_HOST).

Usage: subscriber.py PROJECT TOPIC_ID SUBSCRIPTION_ID. Creates the topic and
an ordered subscription, checks the Subscriber API's answers, publishes ten
messages and receives them over StreamingPull (`subscribe`), nacking the
first delivery of message 3 once; prints a JSON line with each message's
delivery attempt. Exits non-zero on any mismatch.
"""

import json
import sys
import threading

from google.api_core import exceptions
from google.cloud import pubsub_v1

from checks import expect


def main():
    project, topic_id, sub_id = sys.argv[1], sys.argv[2], sys.argv[3]
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, topic_id)
    path = subscriber.subscription_path(project, sub_id)
    publisher.create_topic(request={"name": topic})

    request = {"name": path, "topic": topic, "ack_deadline_seconds": 20, "enable_message_ordering": True}
    created = subscriber.create_subscription(request=request)
    assert created.name == path and created.topic == topic, created
    assert created.ack_deadline_seconds == 20 and created.enable_message_ordering, created
    expect(exceptions.AlreadyExists, lambda: subscriber.create_subscription(request=request))
    missing_topic = {"name": subscriber.subscription_path(project, "other"), "topic": publisher.topic_path(project, "nope")}
    expect(exceptions.NotFound, lambda: subscriber.create_subscription(request=missing_topic))
    assert subscriber.get_subscription(request={"subscription": path}).topic == topic
    listed = [s.name for s in subscriber.list_subscriptions(request={"project": f"projects/{project}"})]
    assert path in listed, listed
    assert path in list(publisher.list_topic_subscriptions(request={"topic": topic}))

    for i in range(10):
        publisher.publish(topic, f"m-{i}".encode(), ordering_key="k", n=str(i)).result(timeout=30)

    attempts = {}
    order = []
    lock = threading.Lock()
    done = threading.Event()

    def callback(message):
        n = int(message.attributes["n"])
        assert message.data == f"m-{n}".encode(), message.data
        assert message.ordering_key == "k", message.ordering_key
        with lock:
            if n == 3 and message.delivery_attempt == 1:
                message.nack()
                return
            attempts[n] = message.delivery_attempt
            order.append(n)
            message.ack()
            if len(attempts) == 10:
                done.set()

    future = subscriber.subscribe(path, callback)
    received = done.wait(60)
    future.cancel()
    try:
        future.result(timeout=30)
    except Exception:  # the cancelled stream
        pass
    assert received, f"received only {sorted(attempts)}"
    assert order == sorted(order), f"not in key order: {order}"
    assert attempts[3] == 2, attempts
    assert all(a == 1 for n, a in attempts.items() if n != 3), attempts

    subscriber.delete_subscription(request={"subscription": path})
    expect(exceptions.NotFound, lambda: subscriber.get_subscription(request={"subscription": path}))
    subscriber.close()
    print(json.dumps({"attempts": attempts}))


if __name__ == "__main__":
    main()
