// A small Node HTTP server that accepts and discards: every request body is read to the end,
// then answered 200. It is the OTLP/HTTP receiver for the tracing scenario (it counts the spans
// of JSON payloads) and the origin of the memory checks (GET /api/<N>{k,m}.bin streams N KiB or
// MiB, so a 100 MB download needs no file). Not used as the origin of the throughput runs: a
// Node origin would be the bottleneck there (BENCHMARKING.md), nginx is.
//   node bench/sink.mjs PORT
import { createServer } from 'node:http';

const [port] = process.argv.slice(2);
const stats = { requests: 0, bytes: 0, spans: 0 };
const SPAN_ID = Buffer.from('"spanId"');
const CHUNK = Buffer.alloc(64 * 1024, 120);

function sendBytes(res, total) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

createServer((req, res) => {
  stats.requests++;
  const size = req.method === 'GET' ? /^\/api\/(\d+)([km])\.bin$/.exec(req.url ?? '') : null;
  if (size !== null) return sendBytes(res, Number(size[1]) * (size[2] === 'k' ? 1024 : 1024 * 1024));
  req.on('data', (chunk) => {
    stats.bytes += chunk.length;
    for (let i = chunk.indexOf(SPAN_ID); i >= 0; i = chunk.indexOf(SPAN_ID, i + 1)) stats.spans++;
  });
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
}).listen(Number(port), '127.0.0.1', () => process.send?.('ready'));

process.on('message', (m) => {
  if (m === 'stats') process.send?.({ stats });
});
process.on('SIGTERM', () => process.exit(0));
