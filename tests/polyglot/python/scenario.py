#!/usr/bin/env python3
"""Herald polyglot scenario, Python client.

Generates stubs from proto/ with grpcio-tools at run time, then runs the
publish / consume (the bidirectional Consume stream: acks and nacks on the
stream, confirmed) / dead-letter scenario against a live server:

    python scenario.py 127.0.0.1:50051

HERALD_POLYGLOT_SKIP_DLQ=1 skips the dead-letter steps (the fifth event is
then simply acked). With HERALD_POLYGLOT_TLS_CA (a CA file) and
HERALD_POLYGLOT_TOKEN, it connects over TLS, sends the token with every call,
and also checks that a call without a token and a call outside the token's
rights are refused. Exits non-zero, naming the failed step, on any failure.
tests/polyglot/node/scenario.js runs the same steps.
"""

import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
HERALD_PROTOS = REPO / "proto"
# grpc.health.v1 and grpc.reflection.v1, vendored. They are compiled with
# tests/polyglot/protos/grpc as the root so the modules become health.v1 and
# reflection.v1: a top-level `grpc` package would shadow grpcio itself. The
# proto packages, and so the gRPC method paths, are unchanged.
GRPC_PROTOS = HERE.parent / "protos" / "grpc"

RPC_TIMEOUT = 10  # seconds, every unary call
DELIVERY_TIMEOUT = 10  # seconds to wait for an expected delivery
# After the last allowed attempt is nacked, how long the event must stay away.
# The group's max backoff is 0.1 s, so a retry would show up well within this.
QUIET_PERIOD = 1.5


def generate_stubs(out_dir):
    """Runs `python -m grpc_tools.protoc` over proto/ and the vendored protos."""
    herald = sorted(str(p.relative_to(HERALD_PROTOS)) for p in HERALD_PROTOS.glob("herald/v1/*.proto"))
    vendored = ["health/v1/health.proto", "reflection/v1/reflection.proto",
                "reflection/v1alpha/reflection.proto"]
    for root, files in ((HERALD_PROTOS, herald), (GRPC_PROTOS, vendored)):
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}",
             f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *files],
            check=True,
        )
    sys.path.insert(0, str(out_dir))


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


@contextlib.contextmanager
def step(name):
    started = time.monotonic()
    try:
        yield
    except Exception as e:  # noqa: BLE001 - report any failure with its step
        import grpc

        if isinstance(e, grpc.RpcError):
            detail = f"gRPC {e.code().name}: {e.details()}"
        else:
            detail = f"{type(e).__name__}: {e}"
        print(f"FAIL {name}: {detail}", flush=True)
        raise SystemExit(1)
    print(f"ok   {name} ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)


class ConsumeStream:
    """A SubscriberService.Consume stream: requests go in through a queue that
    the request iterator drains; a background thread reads the responses into
    a queue of deliveries and a queue of confirmations, so the scenario can
    wait for either with a timeout."""

    def __init__(self, subscriber, open_request):
        from herald.v1 import subscriber_pb2

        self.pb = subscriber_pb2
        self.requests = queue.Queue()
        self.requests.put(subscriber_pb2.ConsumeRequest(open=open_request))
        self.call = subscriber.Consume(self._requests())
        self.deliveries = queue.Queue()
        self.confirmations = queue.Queue()
        self.batch_sizes = []
        self.error = None
        self.ended = threading.Event()
        self.next_id = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _requests(self):
        while True:
            request = self.requests.get()
            if request is None:
                return  # closes the client's side of the stream
            yield request

    def _pump(self):
        import grpc

        try:
            for response in self.call:
                if response.HasField("confirmation"):
                    self.confirmations.put(response.confirmation)
                if response.deliveries:
                    self.batch_sizes.append(len(response.deliveries))
                for delivery in response.deliveries:
                    self.deliveries.put(delivery)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = e
        finally:
            self.ended.set()
            self.deliveries.put(None)
            self.confirmations.put(None)

    def _failure(self):
        if self.error is not None:
            return Failure(f"Consume stream failed: {self.error.code().name}: {self.error.details()}")
        return Failure("Consume stream ended")

    def next(self, timeout):
        """The next delivery, or None when none arrives within `timeout`."""
        try:
            delivery = self.deliveries.get(timeout=timeout)
        except queue.Empty:
            return None
        if delivery is None:
            raise self._failure()
        return delivery

    def settle(self, kind, **fields):
        """Sends an ack or nack (`kind`) asking for a confirmation, and
        returns the confirmation."""
        self.next_id += 1
        message = {"ack": self.pb.ConsumeAck, "nack": self.pb.ConsumeNack}[kind]
        body = message(request_id=self.next_id, confirm=True, **fields)
        self.requests.put(self.pb.ConsumeRequest(**{kind: body}))
        try:
            confirmation = self.confirmations.get(timeout=RPC_TIMEOUT)
        except queue.Empty:
            raise Failure(f"no confirmation of request {self.next_id}") from None
        if confirmation is None:
            raise self._failure()
        check(confirmation.request_id == self.next_id,
              f"confirmation of request {confirmation.request_id}, expected {self.next_id}")
        return confirmation

    def close(self):
        """Closes the client's side; the stream must then end with OK."""
        self.requests.put(None)
        check(self.ended.wait(RPC_TIMEOUT), "the stream did not end after the client closed its side")
        if self.error is not None:
            raise self._failure()

    def cancel(self):
        self.call.cancel()
        self.requests.put(None)


def channels(address):
    """The scenario's channel and one without a token: plaintext, or TLS
    trusting HERALD_POLYGLOT_TLS_CA with HERALD_POLYGLOT_TOKEN as a bearer
    token on every call of the first."""
    import grpc

    ca = os.environ.get("HERALD_POLYGLOT_TLS_CA")
    if not ca:
        return grpc.insecure_channel(address), None
    with open(ca, "rb") as f:
        tls = grpc.ssl_channel_credentials(root_certificates=f.read())
    token = grpc.access_token_call_credentials(os.environ["HERALD_POLYGLOT_TOKEN"])
    # The server's certificate names localhost and 127.0.0.1.
    options = [("grpc.ssl_target_name_override", "localhost")]
    with_token = grpc.secure_channel(address, grpc.composite_channel_credentials(tls, token), options)
    return with_token, grpc.secure_channel(address, tls, options)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: scenario.py HOST:PORT")
    address = sys.argv[1]
    skip_dlq = os.environ.get("HERALD_POLYGLOT_SKIP_DLQ", "") not in ("", "0")

    with tempfile.TemporaryDirectory(prefix="herald-py-stubs-") as gen:
        with step("generate stubs with grpc_tools.protoc"):
            generate_stubs(gen)
        run(address, skip_dlq)


def refusals(channel, anonymous):
    """Over TLS with a token: what the token may not do is refused, and so is
    a call without a token; health needs none."""
    import grpc
    from health.v1 import health_pb2, health_pb2_grpc
    from herald.v1 import admin_pb2, admin_pb2_grpc

    admin = admin_pb2_grpc.AdminServiceStub(channel)

    def code_of(call):
        try:
            call()
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""

    with step("CreateTopic outside the token's topics is PERMISSION_DENIED"):
        code, details = code_of(lambda: admin.CreateTopic(admin_pb2.CreateTopicRequest(
            topic=admin_pb2.Topic(name=f"forbidden.{uuid.uuid4().hex[:8]}")), timeout=RPC_TIMEOUT))
        check(code == grpc.StatusCode.PERMISSION_DENIED, f"answered {code.name}: {details}")
        check("manage" in details, f"the refusal does not name the action: {details}")

    with step("GetServerInfo needs admin: PERMISSION_DENIED"):
        code, details = code_of(lambda: admin.GetServerInfo(admin_pb2.GetServerInfoRequest(),
                                                            timeout=RPC_TIMEOUT))
        check(code == grpc.StatusCode.PERMISSION_DENIED, f"answered {code.name}: {details}")

    with step("a call without a token is UNAUTHENTICATED"):
        code, details = code_of(lambda: admin_pb2_grpc.AdminServiceStub(anonymous).ListTopics(
            admin_pb2.ListTopicsRequest(), timeout=RPC_TIMEOUT))
        check(code == grpc.StatusCode.UNAUTHENTICATED, f"answered {code.name}: {details}")

    with step("health answers without a token"):
        response = health_pb2_grpc.HealthStub(anonymous).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        check(response.status == health_pb2.HealthCheckResponse.SERVING, f"status {response.status}")


def run(address, skip_dlq):
    import grpc
    from google.protobuf.duration_pb2 import Duration
    from health.v1 import health_pb2, health_pb2_grpc
    from herald.v1 import (admin_pb2, admin_pb2_grpc, dead_letter_pb2_grpc, event_pb2, publisher_pb2,
                           publisher_pb2_grpc, subscriber_pb2, subscriber_pb2_grpc)
    from reflection.v1 import reflection_pb2, reflection_pb2_grpc
    from reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2
    from reflection.v1alpha import reflection_pb2_grpc as reflection_v1alpha_pb2_grpc

    OK = subscriber_pb2.LEASE_OUTCOME_OK
    # Unique names: several runs (and the Node scenario) can share one server.
    topic = f"polyglot.py.{uuid.uuid4().hex[:12]}"
    group = "py-workers"

    channel, anonymous = channels(address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    publisher = publisher_pb2_grpc.PublisherServiceStub(channel)
    subscriber = subscriber_pb2_grpc.SubscriberServiceStub(channel)
    dead_letters = dead_letter_pb2_grpc.DeadLetterServiceStub(channel)

    with step(f"connect to {address}"):
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)

    with step(f"CreateTopic {topic}"):
        created = admin.CreateTopic(
            admin_pb2.CreateTopicRequest(topic=admin_pb2.Topic(name=topic)), timeout=RPC_TIMEOUT)
        check(created.topic.name == topic, f"created topic is named {created.topic.name!r}")

    with step(f"CreateGroup {group} (earliest, ack deadline 2 s, backoff 50-100 ms, 3 attempts)"):
        created = admin.CreateGroup(admin_pb2.CreateGroupRequest(group=admin_pb2.Group(
            topic=topic,
            name=group,
            start_position=admin_pb2.Position(edge=admin_pb2.EDGE_EARLIEST),
            ack_deadline=Duration(seconds=2),
            retry_policy=admin_pb2.RetryPolicy(
                min_backoff=Duration(nanos=50_000_000),
                max_backoff=Duration(nanos=100_000_000),
                multiplier=1.0,
            ),
            max_delivery_attempts=3,
        )), timeout=RPC_TIMEOUT)
        check(created.group.max_delivery_attempts == 3,
              f"group has max_delivery_attempts {created.group.max_delivery_attempts}")

    ids = [str(uuid.uuid4()) for _ in range(5)]
    with step("Publish a batch of 5 events"):
        response = publisher.Publish(publisher_pb2.PublishRequest(topic=topic, events=[
            event_pb2.Event(
                id=ids[i],
                type="polyglot.Tested",
                source="polyglot-python",
                key=f"key-{i}",
                content_type="text/plain",
                data=f"event {i}".encode(),
                attributes={"lang": "python"},
            )
            for i in range(5)
        ]), timeout=RPC_TIMEOUT)
        check(len(response.results) == 5, f"{len(response.results)} results")
        check([r.offset for r in response.results] == [0, 1, 2, 3, 4],
              f"offsets {[r.offset for r in response.results]}")
        check([r.id for r in response.results] == ids, "result ids differ from the published ids")
        check(not any(r.duplicate for r in response.results), "an event was reported as duplicate")

    # max_batch 2 under a window of 10: the 5 events come in at least 3 batches,
    # all held at once.
    stream = ConsumeStream(subscriber, subscriber_pb2.ConsumeOpen(
        topic=topic, group=group, consumer="python-scenario", max_in_flight=10, max_batch=2))
    try:
        with step("Consume (max_batch 2): all 5 events arrive, attempt 1, in batches of at most 2"):
            first = {}
            while len(first) < 5:
                delivery = stream.next(DELIVERY_TIMEOUT)
                check(delivery is not None, f"only {len(first)} of 5 events arrived")
                event = delivery.event
                check(delivery.delivery_attempt == 1,
                      f"offset {event.offset} came with delivery_attempt {delivery.delivery_attempt}")
                check(event.offset not in first, f"offset {event.offset} delivered twice")
                check(event.id == ids[event.offset] and event.data == f"event {event.offset}".encode()
                      and event.topic == topic and event.attributes["lang"] == "python",
                      f"offset {event.offset} does not carry the published event: {event}")
                check(delivery.ack_id != "", "empty ack_id")
                first[event.offset] = delivery
            check(max(stream.batch_sizes) <= 2 and len(stream.batch_sizes) >= 3,
                  f"batch sizes {stream.batch_sizes}")

        with step("Ack 4 events on the stream: confirmed, in request order"):
            ack_ids = [first[o].ack_id for o in range(4)]
            confirmation = stream.settle("ack", ack_ids=ack_ids)
            check([r.outcome for r in confirmation.results] == [OK] * 4,
                  f"outcomes {[subscriber_pb2.LeaseOutcome.Name(r.outcome) for r in confirmation.results]}")
            check([r.ack_id for r in confirmation.results] == ack_ids, "results are not in request order")

        poison = first[4]
        if skip_dlq:
            print("skip dead-letter steps (HERALD_POLYGLOT_SKIP_DLQ is set)", flush=True)
            with step("Ack the 5th event"):
                confirmation = stream.settle("ack", ack_ids=[poison.ack_id])
                check([r.outcome for r in confirmation.results] == [OK], f"results {confirmation.results}")
        else:
            dead_letter_steps(dead_letters, stream, poison, topic, group, ids[4])

        with step("no more deliveries; group has no backlog and nothing in flight"):
            deadline = time.monotonic() + 5
            while True:
                stats = admin.GetGroup(admin_pb2.GetGroupRequest(topic=topic, group=group),
                                       timeout=RPC_TIMEOUT).group.stats
                if stats.backlog == 0 and stats.in_flight == 0:
                    break
                check(time.monotonic() < deadline,
                      f"backlog {stats.backlog}, in flight {stats.in_flight} after all events were acked")
                time.sleep(0.05)
            check(stats.dead_letter_count == 0, f"dead_letter_count {stats.dead_letter_count}")
            extra = stream.next(0.2)
            check(extra is None, f"unexpected delivery of offset {extra and extra.event.offset}")

        with step("closing the client's side ends the Consume stream with OK"):
            stream.close()
    finally:
        stream.cancel()

    if anonymous is not None:
        refusals(channel, anonymous)

    with step("grpc.health.v1.Health/Check (service \"\") is SERVING"):
        health = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        check(response.status == health_pb2.HealthCheckResponse.SERVING,
              f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}")

    # Both reflection versions: v1, and v1alpha (all grpcio-reflection and
    # Postman speak).
    for version, pb2, pb2_grpc in (("v1", reflection_pb2, reflection_pb2_grpc),
                                   ("v1alpha", reflection_v1alpha_pb2, reflection_v1alpha_pb2_grpc)):
        with step(f"server reflection (grpc.reflection.{version}) lists herald.v1.PublisherService"):
            reflection = pb2_grpc.ServerReflectionStub(channel)
            responses = list(reflection.ServerReflectionInfo(
                iter([pb2.ServerReflectionRequest(list_services="*")]), timeout=RPC_TIMEOUT))
            check(len(responses) == 1, f"{len(responses)} responses")
            check(responses[0].WhichOneof("message_response") == "list_services_response",
                  f"answer: {responses[0]}")
            services = sorted(s.name for s in responses[0].list_services_response.service)
            print(f"     services: {', '.join(services)}", flush=True)
            for name in ("herald.v1.PublisherService", "herald.v1.SubscriberService",
                         "herald.v1.AdminService", "herald.v1.DeadLetterService"):
                check(name in services, f"{name} is not listed")

    channel.close()
    if anonymous is not None:
        anonymous.close()
    print("python scenario passed" + (" over TLS with a token" if anonymous else ""), flush=True)


def dead_letter_steps(dead_letters, stream, poison, topic, group, poison_id):
    """Nacks the 5th event on the stream until it is dead-lettered, then
    inspects and replays it."""
    from herald.v1 import dead_letter_pb2, subscriber_pb2

    OK = subscriber_pb2.LEASE_OUTCOME_OK
    reason = "poison test"

    delivery = poison
    for attempt in (1, 2, 3):
        with step(f"Nack the 5th event on the stream at attempt {attempt} (reason {reason!r})"):
            if attempt > 1:
                delivery = stream.next(DELIVERY_TIMEOUT)
                check(delivery is not None, f"attempt {attempt} was not redelivered")
            check(delivery.event.offset == 4, f"unexpected delivery of offset {delivery.event.offset}")
            check(delivery.delivery_attempt == attempt,
                  f"delivery_attempt {delivery.delivery_attempt}, expected {attempt}")
            confirmation = stream.settle("nack", ack_ids=[delivery.ack_id], reason=reason)
            check([r.outcome for r in confirmation.results] == [OK], f"results {confirmation.results}")

    with step(f"after 3 failed attempts the event is not delivered again ({QUIET_PERIOD} s)"):
        extra = stream.next(QUIET_PERIOD)
        check(extra is None,
              f"offset {extra and extra.event.offset} delivered again with attempt "
              f"{extra and extra.delivery_attempt}: max_delivery_attempts=3 is not enforced")

    with step("ListDeadLetters shows exactly the 5th event, 3 attempts, last reason"):
        listed = dead_letters.ListDeadLetters(dead_letter_pb2.ListDeadLettersRequest(topic=topic, group=group),
                                              timeout=RPC_TIMEOUT)
        check(len(listed.dead_letters) == 1, f"{len(listed.dead_letters)} dead letters")
        check(listed.total_count == 1, f"total_count {listed.total_count}")
        entry = listed.dead_letters[0]
        check(entry.event.id == poison_id and entry.event.offset == 4, f"dead letter holds {entry.event}")
        check(entry.event.data == b"event 4", f"dead letter data {entry.event.data!r}")
        check(entry.topic == topic and entry.group == group, f"dead letter of {entry.topic}/{entry.group}")
        check(entry.attempts == 3, f"attempts {entry.attempts}")
        check(entry.last_reason == reason, f"last_reason {entry.last_reason!r}")
        check(entry.id != "", "empty dead letter id")

    with step("ReplayDeadLetters by id: replayed_count 1"):
        response = dead_letters.ReplayDeadLetters(
            dead_letter_pb2.ReplayDeadLettersRequest(topic=topic, group=group, ids=[entry.id]), timeout=RPC_TIMEOUT)
        check(response.replayed_count == 1, f"replayed_count {response.replayed_count}")
        check(response.remaining_count == 0, f"remaining_count {response.remaining_count}")

    with step("the replayed event is delivered again at attempt 1; Ack it on the stream"):
        delivery = stream.next(DELIVERY_TIMEOUT)
        check(delivery is not None, "the replayed event was not delivered")
        check(delivery.event.offset == 4 and delivery.event.id == poison_id,
              f"unexpected delivery of offset {delivery.event.offset}")
        check(delivery.delivery_attempt == 1, f"delivery_attempt {delivery.delivery_attempt}")
        confirmation = stream.settle("ack", ack_ids=[delivery.ack_id])
        check([r.outcome for r in confirmation.results] == [OK], f"results {confirmation.results}")

    with step("ListDeadLetters is empty"):
        listed = dead_letters.ListDeadLetters(dead_letter_pb2.ListDeadLettersRequest(topic=topic, group=group),
                                              timeout=RPC_TIMEOUT)
        check(len(listed.dead_letters) == 0, f"{len(listed.dead_letters)} dead letters left")
        check(listed.total_count == 0, f"total_count {listed.total_count}")


if __name__ == "__main__":
    main()
