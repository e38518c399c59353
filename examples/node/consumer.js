// Minimal Herald consumer: joins the `billing` group of the `orders` topic
// over one Consume stream, prints every event and acknowledges it on the same
// stream. Stop it with Ctrl-C.
//
//     npm ci && node consumer.js [HOST:PORT]   (default 127.0.0.1:50051, or HERALD_ADDR)
//     HERALD_CA=ca.pem HERALD_TOKEN=hrd_... node consumer.js   # TLS with a token
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Load the API straight from the .proto files: no code generation step.
// HERALD_PROTO_DIR points at your copy of proto/.
const PROTO_DIR = process.env.HERALD_PROTO_DIR || path.resolve(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(['herald/v1/subscriber.proto', 'herald/v1/admin.proto'], {
  includeDirs: [PROTO_DIR],
  keepCase: true, // field names as in the .proto: ack_id, delivery_attempt
  longs: Number, // uint64 offsets as numbers (exact up to 2^53)
  enums: String, // 'EDGE_EARLIEST' rather than 1
  defaults: true,
});
const { v1 } = grpc.loadPackageDefinition(definition).herald;

const address = process.argv[2] || process.env.HERALD_ADDR || '127.0.0.1:50051';

// Plaintext, or TLS when HERALD_CA names the CA that signed the server's
// certificate; then HERALD_TOKEN (from `herald auth token create`) goes with
// every call as `authorization: Bearer <token>` (grpc-js sends call
// credentials over TLS only).
function credentials() {
  if (!process.env.HERALD_CA) return grpc.credentials.createInsecure();
  const tls = grpc.credentials.createSsl(fs.readFileSync(process.env.HERALD_CA));
  const token = process.env.HERALD_TOKEN;
  if (!token) return tls;
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.add('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(tls, bearer);
}

// Unary call as a promise: await call(client, 'Publish', request).
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10_000 }, (err, response) =>
      (err ? reject(err) : resolve(response)));
  });
}

async function main() {
  const creds = credentials();
  const admin = new v1.AdminService(address, creds);
  const subscriber = new v1.SubscriberService(address, creds);

  // Subscribe alone would create the group at the end of the topic (only new
  // events). Create it first to start from the earliest event; on later runs
  // it already exists and keeps its progress.
  try {
    await call(admin, 'CreateGroup', {
      group: { topic: 'orders', name: 'billing', start_position: { edge: 'EDGE_EARLIEST' } },
    });
    console.log('created group billing');
  } catch (err) {
    if (err.code !== grpc.status.ALREADY_EXISTS) throw err;
  }

  // One bidirectional stream: the first request opens the subscription,
  // later ones ack deliveries (no round trip each). The server keeps up to
  // max_in_flight deliveries out, in batches of at most max_batch.
  const stream = subscriber.Consume();
  stream.write({
    open: {
      topic: 'orders', group: 'billing', consumer: 'node-example', max_in_flight: 100, max_batch: 20,
    },
  });
  console.log(`waiting for events on orders/billing at ${address}`);
  stream.on('data', ({ deliveries }) => {
    if (deliveries.length === 0) return;
    for (const { event, delivery_attempt: attempt } of deliveries) {
      console.log(`${event.type} #${event.offset} key=${event.key} attempt=${attempt}: ${event.data}`);
    }
    // Handle the events, then acknowledge them. An event that is not acked
    // before the group's ack deadline is delivered again.
    stream.write({ ack: { ack_ids: deliveries.map((d) => d.ack_id) } });
  });
  stream.on('error', (err) => {
    console.error(`subscription ended: ${err.message}`);
    process.exit(1);
  });
  stream.on('end', () => process.exit(0));
  process.on('SIGINT', () => {
    stream.end(); // the server settles what was sent, then ends the stream
  });
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
