import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { onCleanup } from './cleanup.js';
import { closedPort } from './upstream.js';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Kills the server (SIGKILL: no goodbye to clients) and waits until it is gone. */
  kill(): Promise<void>;
  /** The same as kill(). */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing is saved) and waits until it answers. */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing (a hung Redis). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** Sends one command (inline protocol) and returns the raw reply. */
  command(line: string): Promise<string>;
}

/**
 * A real redis-server of this test's own on a free loopback port, without persistence. It is
 * killed in cleanup. `.ci/run` installs redis-server when the machine lacks it.
 */
export async function startRedis(): Promise<RedisServer> {
  const port = await closedPort();
  let proc: ChildProcess | undefined;

  async function launch(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc = child;
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = once(child, 'exit').then(() => {
      throw new Error(`redis-server exited: ${stderr.trim()}`);
    });
    exited.catch(() => undefined);
    const deadline = performance.now() + 10_000;
    for (;;) {
      const reply = await Promise.race([command('PING').catch(() => ''), exited]);
      if (reply.startsWith('+PONG')) return;
      if (performance.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within 10s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  function command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let reply = '';
      socket.setTimeout(2_000, () => socket.destroy(new Error('redis command timed out')));
      socket.on('connect', () => socket.write(`${line}\r\n`));
      socket.on('data', (c: Buffer) => {
        reply += c.toString();
        if (reply.endsWith('\r\n')) {
          socket.end();
          resolve(reply);
        }
      });
      socket.on('error', reject);
    });
  }

  async function kill(): Promise<void> {
    const p = proc;
    proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const gone = once(p, 'exit');
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await gone;
  }

  await launch();
  onCleanup(kill);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    stop: kill,
    restart: async () => {
      await kill();
      await launch();
    },
    freeze: () => proc?.kill('SIGSTOP'),
    thaw: () => proc?.kill('SIGCONT'),
    command,
  };
}
