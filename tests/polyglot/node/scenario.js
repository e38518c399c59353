#!/usr/bin/env node
// Herald polyglot scenario, Node client.
//
// Loads the .proto files straight from proto/ with @grpc/proto-loader (no
// code generation) and runs the publish / consume (the bidirectional Consume
// stream: acks and nacks on the stream, confirmed) / dead-letter scenario
// against a live server:
//
//     node scenario.js 127.0.0.1:50051
//
// HERALD_POLYGLOT_SKIP_DLQ=1 skips the dead-letter steps (the fifth event is
// then simply acked). With HERALD_POLYGLOT_TLS_CA (a CA file) and
// HERALD_POLYGLOT_TOKEN, it connects over TLS, sends the token with every
// call, and also checks that a call without a token and a call outside the
// token's rights are refused. Exits non-zero, naming the failed step, on any
// failure.
// tests/polyglot/python/scenario.py runs the same steps.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..', '..');
const RPC_TIMEOUT_MS = 10_000; // every unary call
const DELIVERY_TIMEOUT_MS = 10_000; // waiting for an expected delivery
// After the last allowed attempt is nacked, how long the event must stay away.
// The group's max backoff is 0.1 s, so a retry would show up well within this.
const QUIET_PERIOD_MS = 1_500;

// keepCase: field names as in the .proto (ack_id, delivery_attempt);
// longs: Number is exact up to 2^53, plenty for offsets and counters here;
// enums: String gives 'LEASE_OUTCOME_OK'; defaults: unset scalars read as 0/''.
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

function load() {
  const herald = protoLoader.loadSync(
    ['herald/v1/publisher.proto', 'herald/v1/subscriber.proto', 'herald/v1/admin.proto',
      'herald/v1/dead_letter.proto'],
    { ...LOADER_OPTIONS, includeDirs: [path.join(REPO, 'proto')] },
  );
  // Health and reflection are not part of proto/: vendored copies of the
  // standard files from the gRPC project.
  const standard = protoLoader.loadSync(
    ['grpc/health/v1/health.proto', 'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto'],
    { ...LOADER_OPTIONS, includeDirs: [path.join(__dirname, '..', 'protos')] },
  );
  return {
    herald: grpc.loadPackageDefinition(herald).herald.v1,
    grpc: grpc.loadPackageDefinition(standard).grpc,
  };
}

// Unary call as a promise.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + RPC_TIMEOUT_MS }, (err, response) =>
      err ? reject(err) : resolve(response));
  });
}

// A SubscriberService.Consume stream: deliveries can be awaited one at a
// time with a timeout; acks and nacks go on the stream and await their
// confirmation.
class ConsumeStream {
  constructor(subscriber, open) {
    this.buffer = [];
    this.confirmations = new Map();
    this.batchSizes = [];
    this.waiter = null;
    this.error = null;
    this.ended = false;
    this.nextId = 0;
    this.call = subscriber.Consume();
    this.call.on('data', (response) => {
      if (response.confirmation) {
        this.confirmations.set(response.confirmation.request_id, response.confirmation);
      }
      if (response.deliveries.length > 0) this.batchSizes.push(response.deliveries.length);
      for (const delivery of response.deliveries) this.buffer.push(delivery);
      this.wake();
    });
    this.call.on('error', (err) => {
      if (err.code !== grpc.status.CANCELLED) this.error = err;
      this.ended = true;
      this.wake();
    });
    this.call.on('end', () => {
      this.ended = true;
      this.wake();
    });
    this.call.write({ open });
  }

  wake() {
    if (this.waiter) this.waiter();
  }

  // Waits until ready() holds; false after timeoutMs.
  async until(ready, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
      this.waiter = null;
    }
    return true;
  }

  failure() {
    return new Error(this.error ? `Consume stream failed: ${describe(this.error)}` : 'Consume stream ended');
  }

  // The next delivery, or null when none arrives within timeoutMs.
  async next(timeoutMs) {
    await this.until(() => this.buffer.length > 0 || this.ended, timeoutMs);
    if (this.buffer.length > 0) return this.buffer.shift();
    if (this.ended) throw this.failure();
    return null;
  }

  // Sends an ack or nack (kind) asking for a confirmation; returns it.
  async settle(kind, body) {
    this.nextId += 1;
    const id = this.nextId;
    this.call.write({ [kind]: { ...body, request_id: id, confirm: true } });
    await this.until(() => this.confirmations.has(id) || this.ended, RPC_TIMEOUT_MS);
    if (this.confirmations.has(id)) return this.confirmations.get(id);
    if (this.ended) throw this.failure();
    throw new Error(`no confirmation of request ${id}`);
  }

  // Closes the client's side; the stream must then end with OK.
  async close() {
    this.call.end();
    assert.ok(await this.until(() => this.ended, RPC_TIMEOUT_MS),
      'the stream did not end after the client closed its side');
    if (this.error) throw this.failure();
  }

  cancel() {
    this.call.cancel();
  }
}

function describe(err) {
  if (err && typeof err.code === 'number' && 'details' in err) {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code);
    return `gRPC ${name}: ${err.details}`;
  }
  return err instanceof assert.AssertionError ? `AssertionError: ${err.message}` : String(err && err.stack || err);
}

async function step(name, body) {
  const started = Date.now();
  try {
    const result = await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
    return result;
  } catch (err) {
    console.log(`FAIL ${name}: ${describe(err)}`);
    throw Object.assign(new Error('scenario failed'), { reported: true });
  }
}

const seconds = (s) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const outcomes = (response) => response.results.map((r) => r.outcome);

// The scenario's credentials and the same without a token: plaintext, or TLS
// trusting HERALD_POLYGLOT_TLS_CA with HERALD_POLYGLOT_TOKEN as a bearer token.
function credentials() {
  const ca = process.env.HERALD_POLYGLOT_TLS_CA;
  if (!ca) return { creds: grpc.credentials.createInsecure(), anonymous: null, options: {} };
  const tls = grpc.credentials.createSsl(fs.readFileSync(ca));
  const token = process.env.HERALD_POLYGLOT_TOKEN;
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.add('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  // The server's certificate names localhost and 127.0.0.1.
  const options = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
  return { creds: grpc.credentials.combineChannelCredentials(tls, bearer), anonymous: tls, options };
}

// Over TLS with a token: what the token may not do is refused, and so is a
// call without a token; health needs none.
async function refusals({ herald, std, address, admin, anonymous, options, clients }) {
  const codeOf = async (call) => {
    try {
      await call();
    } catch (err) {
      return err;
    }
    return { code: grpc.status.OK, details: '' };
  };
  await step("CreateTopic outside the token's topics is PERMISSION_DENIED", async () => {
    const name = `forbidden.${crypto.randomBytes(4).toString('hex')}`;
    const err = await codeOf(() => unary(admin, 'CreateTopic', { topic: { name } }));
    assert.equal(err.code, grpc.status.PERMISSION_DENIED, err.details);
    assert.ok(err.details.includes('manage'), `the refusal does not name the action: ${err.details}`);
  });
  await step('GetServerInfo needs admin: PERMISSION_DENIED', async () => {
    const err = await codeOf(() => unary(admin, 'GetServerInfo', {}));
    assert.equal(err.code, grpc.status.PERMISSION_DENIED, err.details);
  });
  await step('a call without a token is UNAUTHENTICATED', async () => {
    const stranger = new herald.AdminService(address, anonymous, options);
    clients.push(stranger);
    const err = await codeOf(() => unary(stranger, 'ListTopics', {}));
    assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.details);
  });
  await step('health answers without a token', async () => {
    const health = new std.health.v1.Health(address, anonymous, options);
    clients.push(health);
    const response = await unary(health, 'Check', { service: '' });
    assert.equal(response.status, 'SERVING');
  });
}

async function run(address, skipDlq) {
  const { herald, grpc: std } = await step('load protos with @grpc/proto-loader', load);
  const { creds, anonymous, options } = credentials();
  const admin = new herald.AdminService(address, creds, options);
  const publisher = new herald.PublisherService(address, creds, options);
  const subscriber = new herald.SubscriberService(address, creds, options);
  const deadLetters = new herald.DeadLetterService(address, creds, options);
  const clients = [admin, publisher, subscriber, deadLetters];

  // Unique names: several runs (and the Python scenario) can share one server.
  const topic = `polyglot.node.${crypto.randomBytes(6).toString('hex')}`;
  const group = 'node-workers';

  await step(`connect to ${address}`, () => new Promise((resolve, reject) =>
    admin.waitForReady(Date.now() + RPC_TIMEOUT_MS, (err) => (err ? reject(err) : resolve()))));

  await step(`CreateTopic ${topic}`, async () => {
    const created = await unary(admin, 'CreateTopic', { topic: { name: topic } });
    assert.equal(created.topic.name, topic);
  });

  await step(`CreateGroup ${group} (earliest, ack deadline 2 s, backoff 50-100 ms, 3 attempts)`, async () => {
    const created = await unary(admin, 'CreateGroup', {
      group: {
        topic,
        name: group,
        start_position: { edge: 'EDGE_EARLIEST' },
        ack_deadline: seconds(2),
        retry_policy: { min_backoff: seconds(0.05), max_backoff: seconds(0.1), multiplier: 1.0 },
        max_delivery_attempts: 3,
      },
    });
    assert.equal(created.group.max_delivery_attempts, 3);
  });

  const ids = Array.from({ length: 5 }, () => crypto.randomUUID());
  await step('Publish a batch of 5 events', async () => {
    const response = await unary(publisher, 'Publish', {
      topic,
      events: ids.map((id, i) => ({
        id,
        type: 'polyglot.Tested',
        source: 'polyglot-node',
        key: `key-${i}`,
        content_type: 'text/plain',
        data: Buffer.from(`event ${i}`),
        attributes: { lang: 'node' },
      })),
    });
    assert.equal(response.results.length, 5);
    assert.deepEqual(response.results.map((r) => r.offset), [0, 1, 2, 3, 4]);
    assert.deepEqual(response.results.map((r) => r.id), ids);
    assert.ok(response.results.every((r) => !r.duplicate), 'an event was reported as duplicate');
  });

  // max_batch 2 under a window of 10: the 5 events come in at least 3
  // batches, all held at once.
  const stream = new ConsumeStream(subscriber, {
    topic, group, consumer: 'node-scenario', max_in_flight: 10, max_batch: 2,
  });
  try {
    const first = await step('Consume (max_batch 2): all 5 events arrive, attempt 1, in batches of at most 2', async () => {
      const byOffset = new Map();
      while (byOffset.size < 5) {
        const delivery = await stream.next(DELIVERY_TIMEOUT_MS);
        assert.ok(delivery, `only ${byOffset.size} of 5 events arrived`);
        const { event } = delivery;
        assert.equal(delivery.delivery_attempt, 1, `offset ${event.offset}: delivery_attempt`);
        assert.ok(!byOffset.has(event.offset), `offset ${event.offset} delivered twice`);
        assert.equal(event.id, ids[event.offset]);
        assert.equal(event.topic, topic);
        assert.equal(event.data.toString(), `event ${event.offset}`);
        assert.equal(event.attributes.lang, 'node');
        assert.notEqual(delivery.ack_id, '');
        byOffset.set(event.offset, delivery);
      }
      assert.ok(Math.max(...stream.batchSizes) <= 2 && stream.batchSizes.length >= 3,
        `batch sizes ${stream.batchSizes}`);
      return byOffset;
    });

    await step('Ack 4 events on the stream: confirmed, in request order', async () => {
      const ackIds = [0, 1, 2, 3].map((o) => first.get(o).ack_id);
      const confirmation = await stream.settle('ack', { ack_ids: ackIds });
      assert.deepEqual(outcomes(confirmation), Array(4).fill('LEASE_OUTCOME_OK'));
      assert.deepEqual(confirmation.results.map((r) => r.ack_id), ackIds, 'results in request order');
    });

    const poison = first.get(4);
    if (skipDlq) {
      console.log('skip dead-letter steps (HERALD_POLYGLOT_SKIP_DLQ is set)');
      await step('Ack the 5th event', async () => {
        const confirmation = await stream.settle('ack', { ack_ids: [poison.ack_id] });
        assert.deepEqual(outcomes(confirmation), ['LEASE_OUTCOME_OK']);
      });
    } else {
      await deadLetterSteps({ deadLetters, stream, poison, topic, group, poisonId: ids[4] });
    }

    await step('no more deliveries; group has no backlog and nothing in flight', async () => {
      const deadline = Date.now() + 5_000;
      let stats;
      for (;;) {
        stats = (await unary(admin, 'GetGroup', { topic, group })).group.stats;
        if (stats.backlog === 0 && stats.in_flight === 0) break;
        assert.ok(Date.now() < deadline,
          `backlog ${stats.backlog}, in flight ${stats.in_flight} after all events were acked`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(stats.dead_letter_count, 0, 'dead_letter_count');
      const extra = await stream.next(200);
      assert.ok(extra === null, `unexpected delivery of offset ${extra && extra.event.offset}`);
    });

    await step("closing the client's side ends the Consume stream with OK", () => stream.close());
  } finally {
    stream.cancel();
  }

  if (anonymous) await refusals({ herald, std, address, admin, anonymous, options, clients });

  await step('grpc.health.v1.Health/Check (service "") is SERVING', async () => {
    const health = new std.health.v1.Health(address, creds, options);
    clients.push(health);
    const response = await unary(health, 'Check', { service: '' });
    assert.equal(response.status, 'SERVING');
  });

  // Both reflection versions: v1, and v1alpha (all some tools speak).
  for (const version of ['v1', 'v1alpha']) {
    await step(`server reflection (grpc.reflection.${version}) lists herald.v1.PublisherService`, async () => {
      const reflection = new std.reflection[version].ServerReflection(address, creds, options);
      clients.push(reflection);
      const responses = await new Promise((resolve, reject) => {
        const call = reflection.ServerReflectionInfo({ deadline: Date.now() + RPC_TIMEOUT_MS });
        const received = [];
        call.on('data', (response) => received.push(response));
        call.on('error', reject);
        call.on('end', () => resolve(received));
        call.write({ list_services: '*' }); // the content is not checked
        call.end();
      });
      assert.equal(responses.length, 1);
      assert.equal(responses[0].message_response, 'list_services_response');
      const services = responses[0].list_services_response.service.map((s) => s.name).sort();
      console.log(`     services: ${services.join(', ')}`);
      for (const name of ['herald.v1.PublisherService', 'herald.v1.SubscriberService',
        'herald.v1.AdminService', 'herald.v1.DeadLetterService']) {
        assert.ok(services.includes(name), `${name} is not listed`);
      }
    });
  }

  for (const client of clients) client.close();
  console.log(`node scenario passed${anonymous ? ' over TLS with a token' : ''}`);
}

// Nacks the 5th event on the stream until it is dead-lettered, then inspects
// and replays it.
async function deadLetterSteps({ deadLetters, stream, poison, topic, group, poisonId }) {
  const reason = 'poison test';
  let delivery = poison;
  for (const attempt of [1, 2, 3]) {
    await step(`Nack the 5th event on the stream at attempt ${attempt} (reason '${reason}')`, async () => {
      if (attempt > 1) {
        delivery = await stream.next(DELIVERY_TIMEOUT_MS);
        assert.ok(delivery, `attempt ${attempt} was not redelivered`);
      }
      assert.equal(delivery.event.offset, 4, 'unexpected delivery');
      assert.equal(delivery.delivery_attempt, attempt, 'delivery_attempt');
      const confirmation = await stream.settle('nack', { ack_ids: [delivery.ack_id], reason });
      assert.deepEqual(outcomes(confirmation), ['LEASE_OUTCOME_OK']);
    });
  }

  await step(`after 3 failed attempts the event is not delivered again (${QUIET_PERIOD_MS / 1000} s)`, async () => {
    const extra = await stream.next(QUIET_PERIOD_MS);
    assert.ok(extra === null, `offset ${extra && extra.event.offset} delivered again with attempt `
      + `${extra && extra.delivery_attempt}: max_delivery_attempts=3 is not enforced`);
  });

  const entry = await step('ListDeadLetters shows exactly the 5th event, 3 attempts, last reason', async () => {
    const listed = await unary(deadLetters, 'ListDeadLetters', { topic, group });
    assert.equal(listed.dead_letters.length, 1, 'dead letters');
    assert.equal(listed.total_count, 1, 'total_count');
    const [only] = listed.dead_letters;
    assert.equal(only.event.id, poisonId);
    assert.equal(only.event.offset, 4);
    assert.equal(only.event.data.toString(), 'event 4');
    assert.equal(only.topic, topic);
    assert.equal(only.group, group);
    assert.equal(only.attempts, 3, 'attempts');
    assert.equal(only.last_reason, reason, 'last_reason');
    assert.notEqual(only.id, '', 'dead letter id');
    return only;
  });

  await step('ReplayDeadLetters by id: replayed_count 1', async () => {
    const response = await unary(deadLetters, 'ReplayDeadLetters', { topic, group, ids: [entry.id] });
    assert.equal(response.replayed_count, 1, 'replayed_count');
    assert.equal(response.remaining_count, 0, 'remaining_count');
  });

  await step('the replayed event is delivered again at attempt 1; Ack it on the stream', async () => {
    const replayed = await stream.next(DELIVERY_TIMEOUT_MS);
    assert.ok(replayed, 'the replayed event was not delivered');
    assert.equal(replayed.event.offset, 4);
    assert.equal(replayed.event.id, poisonId);
    assert.equal(replayed.delivery_attempt, 1, 'delivery_attempt');
    const confirmation = await stream.settle('ack', { ack_ids: [replayed.ack_id] });
    assert.deepEqual(outcomes(confirmation), ['LEASE_OUTCOME_OK']);
  });

  await step('ListDeadLetters is empty', async () => {
    const listed = await unary(deadLetters, 'ListDeadLetters', { topic, group });
    assert.equal(listed.dead_letters.length, 0, 'dead letters left');
    assert.equal(listed.total_count, 0, 'total_count');
  });
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node scenario.js HOST:PORT');
    process.exit(2);
  }
  const skipDlq = !['', '0', undefined].includes(process.env.HERALD_POLYGLOT_SKIP_DLQ);
  try {
    await run(process.argv[2], skipDlq);
  } catch (err) {
    if (!err.reported) console.log(`FAIL ${describe(err)}`);
    process.exit(1);
  }
}

main();
