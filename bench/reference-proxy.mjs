// The floor for any Node proxy (issue 2, docs/performance.md): a node:http server and one undici
// Pool, the response written straight into the ServerResponse by dispatcher.stream(). Nothing
// else: no routing, no header rules, no logs. Only what HTTP needs to stay correct is done:
// hop-by-hop headers are not forwarded.
//   node bench/reference-proxy.mjs PORT UPSTREAM_URL
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstream] = process.argv.slice(2);
const pool = new Pool(upstream, { connections: 256, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 30_000 });

const server = createServer({ keepAliveTimeout: 65_000, noDelay: true }, (req, res) => {
  const headers = { ...req.headers };
  delete headers.connection;
  delete headers['keep-alive'];
  delete headers['transfer-encoding'];
  delete headers.host;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    { path: req.url, method: req.method, headers, body: hasBody ? req : null },
    ({ statusCode, headers: upstreamHeaders }) => {
      delete upstreamHeaders.connection;
      delete upstreamHeaders['keep-alive'];
      delete upstreamHeaders['transfer-encoding'];
      res.writeHead(statusCode, upstreamHeaders);
      return res;
    },
    (err) => {
      if (err === null || err === undefined) return;
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    },
  );
});
server.listen(Number(port), '127.0.0.1', () => process.send?.('ready'));
process.on('SIGTERM', () => process.exit(0));
