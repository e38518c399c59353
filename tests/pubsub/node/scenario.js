// The official Pub/Sub Node client (@google-cloud/pubsub) against Herald
// (PUBSUB_EMULATOR_HOST). Usage: node scenario.js PROJECT TOPIC_ID SUB_ID.
// Creates a topic and a subscription, publishes five messages, receives them
// over StreamingPull nacking the first delivery of message 2 once, deletes
// both; prints a JSON line with the message ids and each delivery attempt.
'use strict';

const assert = require('node:assert/strict');
const { PubSub } = require('@google-cloud/pubsub');

async function main() {
  const [project, topicId, subId] = process.argv.slice(2);
  assert.ok(process.env.PUBSUB_EMULATOR_HOST, 'PUBSUB_EMULATOR_HOST is not set');
  const pubsub = new PubSub({ projectId: project });

  const [topic] = await pubsub.createTopic(topicId);
  assert.equal(topic.name, `projects/${project}/topics/${topicId}`);
  const [sub] = await topic.createSubscription(subId, { ackDeadlineSeconds: 20 });
  const [meta] = await sub.getMetadata();
  assert.equal(meta.ackDeadlineSeconds, 20);
  assert.equal(meta.topic, topic.name);
  const [missing] = await pubsub.topic('missing-topic').exists();
  assert.equal(missing, false);
  await assert.rejects(pubsub.createTopic(topicId), (e) => e.code === 6, 'ALREADY_EXISTS');

  const ids = [];
  for (let i = 0; i < 5; i++) {
    ids.push(await topic.publishMessage({ data: Buffer.from(`n-${i}`), attributes: { n: String(i) } }));
  }

  const attempts = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout, got ${JSON.stringify(attempts)}`)), 60000);
    sub.on('error', (e) => { clearTimeout(timer); reject(e); });
    sub.on('message', (m) => {
      const n = Number(m.attributes.n);
      assert.equal(m.data.toString(), `n-${n}`);
      if (n === 2 && m.deliveryAttempt === 1) {
        m.nack();
        return;
      }
      attempts[n] = m.deliveryAttempt;
      m.ack();
      if (Object.keys(attempts).length === 5) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await sub.close();
  assert.equal(attempts[2], 2, JSON.stringify(attempts));
  for (const n of [0, 1, 3, 4]) assert.equal(attempts[n], 1, JSON.stringify(attempts));

  const [subs] = await topic.getSubscriptions();
  assert.deepEqual(subs.map((s) => s.name), [sub.name]);
  await sub.delete();
  await topic.delete();
  const [exists] = await topic.exists();
  assert.equal(exists, false);
  await pubsub.close();
  console.log(JSON.stringify({ ids, attempts }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
