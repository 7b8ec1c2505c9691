// A catgad command handler in Node.js: AddGiftNote of config/examples/orders.yaml.
//
// catgad POSTs {"command": <CloudEvent>, "state": {...}, "version": N}, signed per
// Standard Webhooks; this server checks the signature with the official
// `standardwebhooks` package, decides, and answers
//   200 {"events": [{"type": ..., "data": {...}}]}   the events to append, or
//   422 {"error": "reason"}                          a business rejection (the caller gets 409).
// It only decides: catgad validates the events against their schemas and appends them.
//
//   npm ci && ORDERS_WEBHOOK_SECRET=whsec_... PORT=8090 node server.js
'use strict';

const http = require('node:http');
const { Webhook } = require('standardwebhooks');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8090);
// The development secret of orders.yaml; a `whsec_` secret is base64, any other is used raw.
const SECRET = process.env.ORDERS_WEBHOOK_SECRET || 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const webhook = SECRET.startsWith('whsec_')
  ? new Webhook(SECRET)
  : new Webhook(SECRET, { format: 'raw' });

const stats = { verified: 0, unverified: 0 };

// The business decision: pure, from the command and the order's state.
function decide(command, state, version) {
  const { order_id: orderId, note } = command.data;
  if (version === 0) {
    return [422, { error: `order ${orderId} does not exist` }];
  }
  if (state.status === 'shipped' || state.status === 'cancelled') {
    return [422, { error: `the order is ${state.status}: too late for a gift note` }];
  }
  return [200, { events: [{ type: 'GiftNoteAdded', data: { order_id: orderId, note } }] }];
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

// The benchmark's bare round trip (bench/handlers.py): a constant answer of the same
// shape, without verifying or deciding anything.
const BARE = JSON.stringify({
  events: [{ type: 'GiftNoteAdded', data: { order_id: 'bare', note: 'bare' } }],
});

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    if (req.url === '/bare') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': BARE.length });
      res.end(BARE);
      return;
    }
    if (req.method === 'GET' && req.url === '/stats') {
      reply(res, 200, stats);
      return;
    }
    const body = Buffer.concat(chunks);
    let payload;
    try {
      payload = webhook.verify(body, req.headers);
    } catch (err) {
      stats.unverified += 1;
      // Not a business rejection (no "error" member): catgad reports a 502 naming the handler.
      reply(res, 401, { message: `signature check failed: ${err.message}` });
      return;
    }
    stats.verified += 1;
    const [status, answer] = decide(payload.command, payload.state, payload.version);
    reply(res, status, answer);
  });
});

server.keepAliveTimeout = 65000; // longer than catgad's pool keeps idle connections
server.listen(PORT, HOST, () => {
  const { port } = server.address();
  console.log(`gift-note handler listening on http://${HOST}:${port}/gift-note`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
