import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { echo, reply, startUpstream, type Reply } from '../helpers/upstream.js';

/** gatehouse's own log (SPEC §1): level as a word, a log level, trace ids, debug lines for decisions. */

const config = (upstream: string, extra = '', route = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
${extra}
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: /api }
    upstream: app
${route}
`;

/** 503 to the first request, then echo. */
function failOnce(): Reply {
  let n = 0;
  return (req, res, body) => (n++ === 0 ? reply(503, 'busy')(req, res, body) : echo(req, res, body));
}

describe('log level', () => {
  it('writes the level as a word, and no debug line at the default level info', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url));
    await g.fetch('in', '/api/x');
    const started = g.log.json.find((l) => l.msg === 'gatehouse started');
    expect(started).toMatchObject({ level: 'info', service: 'gatehouse', logLevel: 'info' });
    expect(g.log.json.filter((l) => l.level === 'debug')).toEqual([]);
  });

  it('takes GATEHOUSE_LOG_LEVEL, and the YAML logLevel over it', async () => {
    const up = await startUpstream(echo);
    const quiet = await startGatehouse(config(up.url), { env: { GATEHOUSE_LOG_LEVEL: 'warn' } });
    expect(quiet.log.json.find((l) => l.msg === 'gatehouse started')).toBeUndefined();

    const yaml = await startGatehouse(config(up.url, 'telemetry: { logLevel: info }'), { env: { GATEHOUSE_LOG_LEVEL: 'error' } });
    expect(yaml.log.json.find((l) => l.msg === 'gatehouse started')).toBeDefined();
  });

  it('warns about a GATEHOUSE_LOG_LEVEL it does not know, naming it, and uses info', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url), { env: { GATEHOUSE_LOG_LEVEL: 'loud' } });
    expect(g.log.json.find((l) => l.variable === 'GATEHOUSE_LOG_LEVEL')).toMatchObject({
      level: 'warn',
      msg: 'GATEHOUSE_LOG_LEVEL=loud is not one of debug, info, warn, error; using info',
    });
    expect(g.log.json.find((l) => l.msg === 'gatehouse started')).toBeDefined();
  });

  it('refuses a YAML logLevel it does not know', async () => {
    const up = await startUpstream(echo);
    await expect(startGatehouse(config(up.url, 'telemetry: { logLevel: verbose }'))).rejects.toThrow(/telemetry.logLevel: must be one of "debug", "info", "warn", "error"/);
  });
});

describe('debug lines', () => {
  it('says which route a request took and which retry was decided, with the trace ids of the request', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(failOnce());
    const g = await startGatehouse(
      config(up.url, `telemetry: { logLevel: debug, traces: { endpoint: ${otlp.tracesUrl} } }`, '    retry: { attempts: 2, on: [503], backoff: { base: 1ms, max: 1ms } }'),
    );
    const res = await g.fetch('in', '/api/orders', { headers: { 'x-request-id': 'req-42' } });
    expect(res.status).toBe(200);
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const ids = { traceId: server!.traceId, spanId: server!.spanId, requestId: 'req-42', route: 'api' };

    const chosen = g.log.json.find((l) => l.msg === 'route chosen');
    expect(chosen).toMatchObject({ level: 'debug', ...ids, method: 'GET', path: '/api/orders', httpRoute: '/api/*', upstream: 'app' });
    const retry = g.log.json.find((l) => l.event === 'gatehouse.retry');
    expect(retry).toMatchObject({ level: 'debug', msg: 'retry', ...ids, reason: '503', 'gatehouse.attempt': 2 });
  });

  it('writes quota decisions at debug, with the trace id of the client when tracing is off', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      config(up.url, 'telemetry: { logLevel: debug }', '    quota: [{ limit: 1, per: 1m, key: ip }]'),
    );
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect((await g.fetch('in', '/api/a', { headers: { traceparent } })).status).toBe(200);
    expect((await g.fetch('in', '/api/a', { headers: { traceparent } })).status).toBe(429);
    const decisions = await eventually(() => {
      const found = g.log.json.filter((l) => l.event === 'gatehouse.quota.decision');
      return found.length >= 2 ? found : undefined;
    });
    expect(decisions.map((d) => d['gatehouse.quota.result'])).toEqual(['allowed', 'rejected']);
    expect(decisions[1]).toMatchObject({ level: 'debug', msg: 'quota decision', route: 'api', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect(decisions[1].spanId).toBeUndefined(); // no span of gatehouse's own
  });
});

describe('trace ids on lines written during a request', () => {
  it('puts the traceId and spanId of the request whose answer opened the breaker on the warning', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(reply(503, 'down'));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }
upstreams: { app: { endpoints: [${up.url}], circuitBreaker: { consecutiveFailures: 1 } } }
routes: [{ name: api, listener: in, match: { pathPrefix: /api }, upstream: app }]
`);
    expect((await g.fetch('in', '/api/x')).status).toBe(503);
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const opened = await eventually(() => g.log.json.find((l) => l.msg === 'circuit breaker opened'));
    expect(opened).toMatchObject({ level: 'warn', upstream: 'app', traceId: server!.traceId, spanId: server!.spanId, route: 'api' });
  });
});
