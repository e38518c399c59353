// Minimal Herald publisher: sends a batch of OrderPlaced events to the
// `orders` topic.
//
//     npm ci && node publisher.js [HOST:PORT]   (default 127.0.0.1:50051, or HERALD_ADDR)
//     HERALD_CA=ca.pem HERALD_TOKEN=hrd_... node publisher.js   # TLS with a token
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Load the API straight from the .proto files: no code generation step.
// HERALD_PROTO_DIR points at your copy of proto/.
const PROTO_DIR = process.env.HERALD_PROTO_DIR || path.resolve(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(['herald/v1/publisher.proto'], {
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
  const publisher = new v1.PublisherService(address, credentials());
  const events = [1, 2, 3].map((n) => ({
    // Leave `id` empty for a server-assigned UUIDv7, or set your own so that
    // a retried publish is recognised as a duplicate.
    type: 'OrderPlaced',
    source: 'examples/node',
    key: `order-${n}`, // the ordering key: typically the aggregate id
    content_type: 'application/json',
    data: Buffer.from(JSON.stringify({ order_id: `order-${n}`, amount_cents: n * 1250 })),
  }));
  // One request is one all-or-nothing batch; the reply comes once it is
  // durably stored. The topic is created on first use.
  const response = await call(publisher, 'Publish', { topic: 'orders', events });
  for (const result of response.results) {
    console.log(`published ${result.id} at offset ${result.offset}`);
  }
  publisher.close();
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
