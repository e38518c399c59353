"""The official Pub/Sub Python client against Herald (PUBSUB_EMULATOR_HOST).

Usage: publisher.py PROJECT TOPIC_ID. Creates the topic, checks the answers
of the Publisher API, publishes five ordered messages with attributes and
prints a JSON line with their message ids. Exits non-zero on any mismatch.
"""

import json
import os
import sys

from google.api_core import exceptions
from google.cloud import pubsub_v1

from checks import expect
from google.protobuf import duration_pb2, field_mask_pb2


def main():
    project, topic_id = sys.argv[1], sys.argv[2]
    assert os.environ.get("PUBSUB_EMULATOR_HOST"), "PUBSUB_EMULATOR_HOST is not set"
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    path = publisher.topic_path(project, topic_id)

    created = publisher.create_topic(request={"name": path})
    assert created.name == path, created.name
    expect(exceptions.AlreadyExists, lambda: publisher.create_topic(request={"name": path}))
    assert publisher.get_topic(request={"topic": path}).name == path
    listed = [t.name for t in publisher.list_topics(request={"project": f"projects/{project}"})]
    assert path in listed, listed
    assert all(n.startswith(f"projects/{project}/topics/") for n in listed), listed

    updated = publisher.update_topic(
        request={
            "topic": {"name": path, "message_retention_duration": duration_pb2.Duration(seconds=3600)},
            "update_mask": field_mask_pb2.FieldMask(paths=["message_retention_duration"]),
        }
    )
    assert updated.message_retention_duration.total_seconds() == 3600, updated

    futures = [
        publisher.publish(path, f"order-{i}".encode(), ordering_key="user-1", kind="OrderPlaced", n=str(i))
        for i in range(5)
    ]
    ids = [f.result(timeout=30) for f in futures]
    assert len(set(ids)) == 5, ids

    expect(exceptions.InvalidArgument, lambda: publisher.get_topic(request={"topic": f"projects/{project}/topics/goog-x"}))
    expect(exceptions.InvalidArgument, lambda: publisher.get_topic(request={"topic": "topics/x"}))
    missing = publisher.topic_path(project, "missing-topic")
    expect(exceptions.NotFound, lambda: publisher.get_topic(request={"topic": missing}))
    expect(exceptions.NotFound, lambda: publisher.publish(missing, b"x").result(timeout=30))

    doomed = publisher.topic_path(project, "doomed~topic")
    publisher.create_topic(request={"name": doomed})
    publisher.delete_topic(request={"topic": doomed})
    expect(exceptions.NotFound, lambda: publisher.get_topic(request={"topic": doomed}))

    print(json.dumps({"ids": ids}))


if __name__ == "__main__":
    main()
