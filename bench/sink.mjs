// A small Node HTTP server that accepts and discards: every request body is read to the end,
// then answered 200. It is the OTLP/HTTP receiver for the tracing scenarios and the origin of the
// memory checks (GET /api/<N>{k,m}.bin streams N KiB or MiB, so a 100 MB download needs no file).
// Not used as the origin of the throughput runs: a Node origin would be the bottleneck there
// (docs/performance.md, Method), nginx is.
//
// OTLP export requests are decoded, not just counted: protobuf (the default protocol) with
// protobufjs from the opentelemetry-proto schema the tests use (test/helpers/otlp-proto), an
// implementation independent of the exporter's, and JSON with JSON.parse. Every span must have
// a 16-byte trace id, an 8-byte span id, a name and an end after its start; the stats say how
// many did not, and how many requests did not decode.
//   node bench/sink.mjs PORT
import { createServer } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

const [port] = process.argv.slice(2);
const stats = { requests: 0, bytes: 0, spans: 0, invalidSpans: 0, undecodable: 0 };
const CHUNK = Buffer.alloc(64 * 1024, 120);

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(import.meta.dirname, '..', 'test', 'helpers', 'otlp-proto', target);
root.loadSync(['opentelemetry/proto/collector/trace/v1/trace_service.proto']);
const TraceRequest = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

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

const idBytes = (id, json) => (json ? (typeof id === 'string' && /^[0-9a-f]*$/.test(id) ? id.length / 2 : -1) : id?.length ?? 0);
/** A fixed64 as protobufjs decodes it (a Long, or a number without the long package) or a JSON string. */
const nanos = (v) => (v === undefined || v === null ? 0 : typeof v === 'object' ? Number(BigInt.asUintN(64, (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0))) : Number(v));

/** Counts the spans of one export request, checking each. */
function countSpans(body, contentType) {
  const json = contentType.startsWith('application/json');
  // the decoded message itself, not toObject(): the sink shares the load core with wrk
  const request = json ? JSON.parse(body.toString('utf8')) : TraceRequest.decode(body);
  for (const rs of request.resourceSpans ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        stats.spans++;
        const ok = idBytes(s.traceId, json) === 16 && idBytes(s.spanId, json) === 8 && typeof s.name === 'string' && s.name !== '' && nanos(s.endTimeUnixNano) >= nanos(s.startTimeUnixNano) && nanos(s.startTimeUnixNano) > 0;
        if (!ok) stats.invalidSpans++;
      }
    }
  }
}

createServer((req, res) => {
  stats.requests++;
  const size = req.method === 'GET' ? /^\/api\/(\d+)([km])\.bin$/.exec(req.url ?? '') : null;
  if (size !== null) return sendBytes(res, Number(size[1]) * (size[2] === 'k' ? 1024 : 1024 * 1024));
  const otlp = req.method === 'POST' && req.url === '/v1/traces';
  const chunks = [];
  req.on('data', (chunk) => {
    stats.bytes += chunk.length;
    if (otlp) chunks.push(chunk);
  });
  req.on('end', () => {
    if (otlp) {
      try {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        countSpans(body, req.headers['content-type'] ?? '');
      } catch {
        stats.undecodable++;
      }
    }
    // an empty ExportTraceServiceResponse: all accepted
    if (otlp && !(req.headers['content-type'] ?? '').startsWith('application/json')) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
}).listen(Number(port), '127.0.0.1', () => process.send?.('ready'));

process.on('message', (m) => {
  if (m === 'stats') process.send?.({ stats });
});
process.on('SIGTERM', () => process.exit(0));
