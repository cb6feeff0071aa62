// A flood of messages from a thread of its own (its own event loop and NATS connection), so it
// can outpace the services it floods, as a sender on another host would. Started by flood.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';

const { url, subject, bodies, batch, pauseMs, reply } = workerData;
const nc = await connect({ servers: url });
const datas = bodies.map((b) => new TextEncoder().encode(b));
let stop = false;
parentPort.on('message', (m) => {
  if (m === 'stop') stop = true;
});
let sent = 0;
while (!stop) {
  for (let i = 0; i < batch; i++) nc.publish(subject, datas[sent++ % datas.length], { reply });
  await nc.flush().catch(() => undefined);
  await new Promise((r) => (pauseMs > 0 ? setTimeout(r, pauseMs) : setImmediate(r)));
}
await nc.drain().catch(() => undefined);
parentPort.postMessage({ sent });
