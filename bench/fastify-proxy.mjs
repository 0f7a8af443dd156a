// What a Node user would pick instead of gatehouse: fastify 5 + @fastify/http-proxy 11 with
// its defaults (undici underneath), logging off.
//   node bench/fastify-proxy.mjs PORT UPSTREAM_URL
import proxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const [port, upstream] = process.argv.slice(2);
const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 * 1024 });
await app.register(proxy, { upstream, http2: false });
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.send?.('ready');
process.on('SIGTERM', () => process.exit(0));
