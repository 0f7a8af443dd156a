import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { closedPort, reply, startUpstream } from '../helpers/upstream.js';

describe('request duration metrics', () => {
  it('exports the server and client duration histograms by route, method, status and error type at /metrics', async () => {
    const up = await startUpstream([reply(200, 'ok'), reply(503, 'busy')]);
    const down = await closedPort();
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app: { endpoints: [${up.url}] }
  gone: { endpoints: [http://127.0.0.1:${down}] }
routes:
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: app }
  - { name: old, listener: in, match: { pathPrefix: /old }, upstream: gone }
`);
    expect((await g.fetch('in', '/api/a')).status).toBe(200);
    expect((await g.fetch('in', '/api/b')).status).toBe(503);
    expect((await g.fetch('in', '/old/c')).status).toBe(502);
    expect((await g.fetch('in', '/nowhere')).status).toBe(404);

    const text = await eventually(async () => {
      const body = (await request(g.admin('/metrics'))).body.toString();
      return body.includes('route="",http_request_method="GET",http_response_status_code="404"') && body;
    });
    const server = 'http_server_request_duration_seconds';
    const client = 'http_client_request_duration_seconds';
    expect(text).toContain(`# TYPE ${server} histogram`);
    expect(text).toContain(`# TYPE ${client} histogram`);
    expect(text).toContain(`${server}_count{route="api",http_request_method="GET",http_response_status_code="200"} 1`);
    expect(text).toContain(`${server}_count{route="api",http_request_method="GET",http_response_status_code="503"} 1`);
    expect(text).toContain(`${server}_count{route="old",http_request_method="GET",http_response_status_code="502",error_type="bad_gateway"} 1`);
    expect(text).toContain(`${server}_count{route="",http_request_method="GET",http_response_status_code="404",error_type="no_route"} 1`);
    expect(text).toMatch(new RegExp(`${server}_bucket\\{route="api",http_request_method="GET",http_response_status_code="200",le="\\+Inf"\\} 1`));
    expect(text).toContain(`${client}_count{upstream="app",route="api",http_request_method="GET",http_response_status_code="200"} 1`);
    expect(text).toContain(`${client}_count{upstream="gone",route="old",http_request_method="GET",error_type="connect-failure"} 1`);
  });
});
