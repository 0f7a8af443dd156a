import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { closedPort, reply, startUpstream } from '../helpers/upstream.js';

describe('request duration metrics', () => {
  it('labels the server and client duration histograms with the semconv names plus gatehouse_route and gatehouse_upstream', async () => {
    const up = await startUpstream([reply(200, 'ok'), reply(503, 'busy'), reply(404, 'none')]);
    const down = await closedPort();
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app: { endpoints: [${up.url}] }
  gone: { endpoints: [http://127.0.0.1:${down}] }
routes:
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: app }
  - { name: item, listener: in, match: { path: /item }, upstream: app }
  - { name: old, listener: in, match: { pathPrefix: /old }, upstream: gone }
`);
    expect((await g.fetch('in', '/api/a')).status).toBe(200);
    expect((await g.fetch('in', '/api/b')).status).toBe(503);
    expect((await g.fetch('in', '/item')).status).toBe(404);
    expect((await g.fetch('in', '/old/c')).status).toBe(502);
    expect((await g.fetch('in', '/nowhere')).status).toBe(404);

    const text = await eventually(async () => {
      const body = (await request(g.admin('/metrics'))).body.toString();
      return body.includes('error_type="no_route"') && body;
    });
    const server = 'http_server_request_duration_seconds';
    const client = 'http_client_request_duration_seconds';
    const app = `server_address="127.0.0.1",server_port="${new URL(up.url).port}"`;
    expect(text).toContain(`# TYPE ${server} histogram`);
    expect(text).toContain(`# TYPE ${client} histogram`);
    // http_route is the match template; an upstream's 5xx is a failure (error_type = its status), a 4xx is not
    expect(text).toContain(`${server}_count{gatehouse_route="api",http_route="/api/*",http_request_method="GET",http_response_status_code="200"} 1`);
    expect(text).toContain(`${server}_count{gatehouse_route="api",http_route="/api/*",http_request_method="GET",http_response_status_code="503",error_type="503"} 1`);
    expect(text).toContain(`${server}_count{gatehouse_route="item",http_route="/item",http_request_method="GET",http_response_status_code="404"} 1`);
    expect(text).toContain(`${server}_count{gatehouse_route="old",http_route="/old/*",http_request_method="GET",http_response_status_code="502",error_type="bad_gateway"} 1`);
    // no route matched: neither route label, gatehouse's own error code
    expect(text).toContain(`${server}_count{http_request_method="GET",http_response_status_code="404",error_type="no_route"} 1`);
    expect(text).toMatch(new RegExp(`${server}_bucket\\{gatehouse_route="api",http_route="/api/\\*",http_request_method="GET",http_response_status_code="200",le="\\+Inf"\\} 1`));
    // client side: the endpoint as server_address/server_port; 4xx and 5xx answers are failures (semconv for clients)
    expect(text).toContain(`${client}_count{gatehouse_upstream="app",gatehouse_route="api",${app},http_request_method="GET",http_response_status_code="200"} 1`);
    expect(text).toContain(`${client}_count{gatehouse_upstream="app",gatehouse_route="api",${app},http_request_method="GET",http_response_status_code="503",error_type="503"} 1`);
    expect(text).toContain(`${client}_count{gatehouse_upstream="app",gatehouse_route="item",${app},http_request_method="GET",http_response_status_code="404",error_type="404"} 1`);
    expect(text).toContain(
      `${client}_count{gatehouse_upstream="gone",gatehouse_route="old",server_address="127.0.0.1",server_port="${down}",http_request_method="GET",error_type="connect-failure"} 1`,
    );
    // the old label names are gone from the histograms
    expect(text).not.toMatch(/_duration_seconds_count\{(route|upstream)=/);
  });
});
