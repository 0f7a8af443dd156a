import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfigFile, type LoadedConfig } from '../../../src/config/load.js';
import { promtool } from '../../helpers/prometheus.js';

/*
 * What can be checked of deploy/ without a cluster or a Docker engine: the alert rules by promtool
 * (syntax and the rule unit tests beside them), the compose kit's Prometheus config by promtool
 * with the files laid out as compose mounts them, every gatehouse config by the loader, and that
 * the manifests, compose file and collector config agree with each other and with those configs.
 * The live check (a Prometheus scraping a gatehouse) is test/integration/deploy-prometheus.test.ts.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string) => readFileSync(join(DEPLOY, path), 'utf8');
const env = { GATEHOUSE_ADMIN_TOKEN: 'placeholder-token' };

function loadConfig(path: string): LoadedConfig['config'] {
  try {
    return loadConfigFile(join(DEPLOY, path), { env }).config;
  } catch (err) {
    throw new Error(err instanceof ConfigError ? err.message : String(err));
  }
}

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

describe('deploy/prometheus', () => {
  it('alerts.yaml passes promtool check rules', async () => {
    const { code, output } = await promtool(['check', 'rules', join(DEPLOY, 'prometheus/alerts.yaml')]);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
    expect(code).toBe(0);
  });

  it('alerts.yaml passes its rule unit tests (promtool test rules): each alert fires on its series and not on the others', async () => {
    const { code, output } = await promtool(['test', 'rules', join(DEPLOY, 'prometheus/alerts.test.yaml')]);
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });

  it('the rule unit tests cover every alert', () => {
    const alerts = (parse(read('prometheus/alerts.yaml')) as { groups: { rules: { alert: string }[] }[] }).groups.flatMap((g) => g.rules.map((r) => r.alert));
    const tests = parse(read('prometheus/alerts.test.yaml')) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] };
    const firing = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    expect([...firing].sort()).toEqual([...alerts].sort());
  });
});

describe('deploy/compose', () => {
  const compose = parse(read('compose/compose.yaml')) as {
    services: Record<string, { image?: string; volumes?: string[]; command?: string[]; environment?: Record<string, string> }>;
  };
  const binds = (service: string) =>
    (compose.services[service]?.volumes ?? [])
      .map((v) => v.split(':'))
      .filter(([host]) => host!.startsWith('.'))
      .map(([host, container]) => ({ host: resolve(DEPLOY, 'compose', host!), container: container! }));

  it('has gatehouse, Redis, an OpenTelemetry Collector and Prometheus, and every file it mounts exists', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['gatehouse', 'redis', 'otel-collector', 'prometheus']));
    for (const service of Object.keys(compose.services)) for (const b of binds(service)) expect(existsSync(b.host), `${service} mounts ${b.host}`).toBe(true);
  });

  it('uses only the interpolation compose understands: ${NAME}, ${NAME:?message}, ${NAME:-default}, $$', () => {
    const strings: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (v !== null && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(compose);
    const odd = strings.filter((s) => /\$(?!\$|\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^$}]*)?\})/.test(s.replace(/\$\$/g, '')));
    expect(odd).toEqual([]);
  });

  it('its Prometheus config passes promtool check config, laid out as compose mounts it (alert rules included)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-compose-'));
    try {
      for (const b of binds('prometheus')) {
        mkdirSync(dirname(join(root, b.container)), { recursive: true });
        copyFileSync(b.host, join(root, b.container));
      }
      const config = compose.services.prometheus!.command!.find((c) => c.startsWith('--config.file='))!.slice('--config.file='.length);
      const { code, output } = await promtool(['check', 'config', join(root, config)]);
      expect(output).toMatch(/SUCCESS: 1 rule files found/);
      expect(output).toMatch(/SUCCESS: \d+ rules found/);
      expect(code).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("gatehouse's config is valid and points at the compose services: Redis, the collector, the store", () => {
    const mount = binds('gatehouse').find((b) => b.container === '/etc/gatehouse/gatehouse.yaml');
    expect(mount, 'the config is mounted where the image looks for it (GATEHOUSE_CONFIG)').toBeDefined();
    const config = loadConfig('compose/gatehouse.yaml');
    const hosts = new Set(Object.keys(compose.services));
    for (const store of Object.values(config.stores ?? {})) if (store.type === 'redis') expect(hosts).toContain(new URL(store.url).hostname);
    for (const u of Object.values(config.upstreams)) for (const e of u.endpoints) expect(hosts).toContain(new URL(e).hostname);
    const traces = new URL(config.telemetry.traces.endpoint!);
    expect(traces.hostname).toBe('otel-collector');
    // the collector listens for OTLP/HTTP on that port
    const collector = parse(read('compose/otel-collector.yaml')) as { receivers: { otlp: { protocols: { http: { endpoint: string } } } } };
    expect(portOf(collector.receivers.otlp.protocols.http.endpoint)).toBe(Number(traces.port));
    // and Prometheus scrapes gatehouse's admin listener
    const prometheus = parse(read('compose/prometheus.yml')) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
    const job = prometheus.scrape_configs.find((j) => j.job_name === 'gatehouse')!;
    expect(job.static_configs[0]!.targets).toEqual([`gatehouse:${config.admin.address.port}`]);
  });

  it('its collector config is plausible: every component a pipeline names is defined, every defined one is used', () => {
    const c = parse(read('compose/otel-collector.yaml')) as {
      receivers: object;
      processors: object;
      exporters: object;
      extensions?: object;
      service: { extensions?: string[]; pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }> };
    };
    expect(Object.keys(c.service.pipelines)).toContain('traces');
    const used = { receivers: new Set<string>(), processors: new Set<string>(), exporters: new Set<string>() };
    for (const [name, p] of Object.entries(c.service.pipelines)) {
      for (const kind of ['receivers', 'processors', 'exporters'] as const) {
        for (const component of p[kind] ?? []) {
          expect(Object.keys(c[kind]), `pipeline ${name} names ${kind} ${component}`).toContain(component);
          used[kind].add(component);
        }
      }
    }
    for (const kind of ['receivers', 'processors', 'exporters'] as const) expect([...used[kind]].sort()).toEqual(Object.keys(c[kind]).sort());
    expect((c.service.extensions ?? []).sort()).toEqual(Object.keys(c.extensions ?? {}).sort());
  });

  it('provisions Grafana with the dashboard and a data source the dashboard can pick', () => {
    const grafana = binds('grafana');
    expect(grafana.map((b) => b.host)).toContain(join(DEPLOY, 'grafana/gatehouse.json'));
    const provider = parse(read('compose/grafana/dashboards.yaml')) as { providers: { options: { path: string } }[] };
    const dashboardMount = grafana.find((b) => b.host.endsWith('gatehouse.json'))!;
    expect(dirname(dashboardMount.container)).toBe(provider.providers[0]!.options.path);
    const sources = parse(read('compose/grafana/datasources.yaml')) as { datasources: { type: string }[] };
    expect(sources.datasources.map((d) => d.type)).toContain('prometheus');
  });
});

describe('deploy/kubernetes', () => {
  const kustomization = parse(read('kubernetes/kustomization.yaml')) as {
    resources: string[];
    configMapGenerator: { name: string; files: string[] }[];
  };
  const docs = kustomization.resources.flatMap((file) => parseAllDocuments(read(`kubernetes/${file}`)).map((d) => d.toJS() as Record<string, any>));
  const deployment = docs.find((d) => d.kind === 'Deployment')!;
  const service = docs.find((d) => d.kind === 'Service')!;
  const pod = deployment.spec.template.spec;
  const sidecar = pod.initContainers.find((c: { name: string }) => c.name === 'gatehouse');
  const generated = kustomization.configMapGenerator[0]!;
  const config = loadConfig(`kubernetes/${generated.files[0]}`);
  const adminPort = config.admin.address.port;

  it("runs gatehouse as a native sidecar (an init container with restartPolicy: Always) with the generated ConfigMap's config", () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['Deployment', 'Service']);
    expect(sidecar.restartPolicy).toBe('Always');
    const volume = pod.volumes.find((v: { configMap?: { name: string } }) => v.configMap?.name === generated.name);
    expect(volume, `a volume of ConfigMap ${generated.name}`).toBeDefined();
    // mounted as a directory where the image's GATEHOUSE_CONFIG points, so updates reach it
    const mount = sidecar.volumeMounts.find((m: { name: string }) => m.name === volume.name);
    expect(mount).toEqual({ name: volume.name, mountPath: '/etc/gatehouse' });
    expect(generated.files).toEqual(['gatehouse.yaml']);
  });

  it('probes the admin /readyz (startup, readiness) and /healthz (liveness) on the admin port, by number', () => {
    expect(sidecar.startupProbe.httpGet).toEqual({ path: '/readyz', port: adminPort });
    expect(sidecar.readinessProbe.httpGet).toEqual({ path: '/readyz', port: adminPort });
    expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: adminPort });
    expect(deployment.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(adminPort));
  });

  it("sends the Service to gatehouse's inbound listener with a numeric targetPort (named ports of sidecars resolve only from 1.32)", () => {
    const inbound = config.listeners.find((l) => l.name === 'inbound')!;
    expect(service.spec.ports).toHaveLength(1);
    expect(typeof service.spec.ports[0].targetPort).toBe('number');
    expect(service.spec.ports[0].targetPort).toBe(inbound.address.port);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
  });

  it('sets resources, and a grace period longer than the preStop sleep plus the drain timeout', () => {
    expect(sidecar.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(sidecar.resources.limits).toMatchObject({ memory: expect.any(String) });
    const sleepS = Number(sidecar.lifecycle.preStop.exec.command.at(-1));
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(sleepS + config.shutdown.drainTimeout / 1000);
  });
});

describe('deploy/grafana', () => {
  it('gatehouse.json is a dashboard whose panels all query the chosen Prometheus data source', () => {
    interface Panel {
      id: number;
      type: string;
      datasource?: { uid: string };
      targets?: { datasource: { uid: string }; expr: string }[];
      panels?: Panel[];
    }
    const dashboard = JSON.parse(read('grafana/gatehouse.json')) as { uid: string; panels: Panel[]; templating: { list: { name: string; type: string }[] } };
    expect(dashboard.uid).toBe('gatehouse');
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    const all: Panel[] = [];
    const walk = (ps: Panel[]) => ps.forEach((p) => (all.push(p), walk(p.panels ?? [])));
    walk(dashboard.panels);
    expect(new Set(all.map((p) => p.id)).size).toBe(all.length);
    for (const p of all.filter((p) => p.type !== 'row')) {
      expect(p.datasource?.uid).toBe('${datasource}');
      expect(p.targets?.length).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource.uid).toBe('${datasource}');
    }
  });
});
