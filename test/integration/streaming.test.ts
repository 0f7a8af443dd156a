import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { spawnGatehouse, type GatehouseProcess } from '../helpers/process.js';
import { startUpstream, type Reply } from '../helpers/upstream.js';

const MB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Bytes every body() has produced so far: what a sender has managed to push out. */
let produced = 0;
/** For each slow reader's pause: how many bytes the sender produced while it lasted. */
const sentDuringPauses: number[] = [];

/** A body of `bytes` made of 64 KiB chunks, produced on demand (the client side never buffers it). */
const body = (bytes: number) => {
  let left = bytes;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, CHUNK.length);
      left -= n;
      produced += n;
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
};

/** Reads a stream to the end, pausing once for `pauseMs` after `pauseAfter` bytes: a slow reader. */
function drainSlowly(stream: NodeJS.ReadableStream & { pause(): void; resume(): void }, pauseAfter: number, pauseMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let paused = false;
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!paused && bytes >= pauseAfter) {
        paused = true;
        stream.pause();
        const before = produced;
        setTimeout(() => {
          sentDuringPauses.push(produced - before);
          stream.resume();
        }, pauseMs);
      }
    });
    stream.on('end', () => resolve(bytes));
    stream.on('error', reject);
  });
}

/** The upstream: POST bodies are read slowly and counted; GET /download?bytes=N streams N bytes as fast as it may. */
const bulk: Reply = async (req, res) => {
  if (req.method === 'POST') {
    const bytes = await drainSlowly(req, 10 * MB, 700);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes }));
    return;
  }
  const n = Number(new URL(req.url!, 'http://x').searchParams.get('bytes'));
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  body(n).pipe(res);
};

function upload(url: string, bytes: number, chunked: boolean): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(bytes) };
    const req = httpRequest(url, { method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    body(bytes).pipe(req);
  });
}

function download(url: string, pauseAfter: number, pauseMs: number): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent: false }, (res) => {
      drainSlowly(res, pauseAfter, pauseMs).then((bytes) => resolve({ status: res.statusCode!, bytes }), reject);
    })
      .on('error', reject)
      .end();
  });
}

/** Resets the peak RSS counter (VmHWM) of a process; false where the kernel does not allow it. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Peak RSS growth over `baseline` while `work` runs: VmHWM where resettable, else 10 ms samples. */
async function peakGrowth(g: GatehouseProcess, work: () => Promise<void>): Promise<number> {
  const exactPeak = resetPeak(g.pid);
  const baseline = g.memory().rss;
  let sampled = baseline;
  const timer = setInterval(() => (sampled = Math.max(sampled, g.memory().rss)), 10);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return (exactPeak ? Math.max(g.memory().peak, sampled) : sampled) - baseline;
}

describe('large bodies', () => {
  it('streams 100 MB bodies both ways with backpressure: the sender stalls while the receiver pauses, and gatehouse never holds the body', async () => {
    const up = await startUpstream(bulk, { streaming: true });
    const g = await spawnGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
telemetry: { accessLog: "off" }
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: bulk, listener: in, match: { pathPrefix: / }, upstream: app, maxBodySize: 200mb }]
`);
    // warm up with the same traffic shape: pools, heap, buffers and JIT reach their steady size first
    for (let i = 0; i < 2; i++) {
      await Promise.all([
        upload(g.url('in') + '/up', 20 * MB, false),
        upload(g.url('in') + '/up', 20 * MB, true),
        download(g.url('in') + `/download?bytes=${20 * MB}`, 10 * MB, 100),
      ]);
    }

    // One 100 MB body at a time, each direction; the far side stops reading for 700 ms after 10 MB.
    // A proxy without backpressure lets the sender push the other 90 MB into it during that pause;
    // with backpressure the sender stalls once the socket buffers on the way are full.
    sentDuringPauses.length = 0;
    const runs: Record<string, number[]> = { upload: [], chunkedUpload: [], download: [] };
    for (let i = 0; i < 3; i++) {
      runs.upload!.push(
        await peakGrowth(g, async () => {
          expect(await upload(g.url('in') + '/up', 100 * MB, false)).toEqual({ status: 200, json: { bytes: 100 * MB } });
        }),
      );
      runs.chunkedUpload!.push(
        await peakGrowth(g, async () => {
          expect(await upload(g.url('in') + '/up', 100 * MB, true)).toEqual({ status: 200, json: { bytes: 100 * MB } });
        }),
      );
      runs.download!.push(
        await peakGrowth(g, async () => {
          expect(await download(g.url('in') + `/download?bytes=${100 * MB}`, 10 * MB, 700)).toEqual({ status: 200, bytes: 100 * MB });
        }),
      );
    }
    console.log(
      `gatehouse peak RSS growth per 100 MB body, MB: ${Object.entries(runs)
        .map(([k, v]) => `${k} ${v.map((b) => (b / MB).toFixed(1)).join('/')}`)
        .join(', ')}`,
    );
    console.log(`sent while the receiver paused, MB: ${sentDuringPauses.map((b) => (b / MB).toFixed(1)).join(' ')}`);
    expect(sentDuringPauses).toHaveLength(9);
    // (what does get through fills the kernel's loopback socket buffers on the way: up to ~20 MB)
    for (const sent of sentDuringPauses) expect(sent).toBeLessThan(48 * MB);
    // RSS: the chunks that passed are garbage until V8 collects them (it lets external memory grow
    // by tens of MB first), so a reading is often 0 and sometimes 10-25 MB on a busy machine; a
    // buffered body would add its 90 MB to every one. The smallest of three runs is the body's.
    for (const [direction, growths] of Object.entries(runs)) expect(Math.min(...growths), direction).toBeLessThan(32 * MB);
  }, 120_000);
});
