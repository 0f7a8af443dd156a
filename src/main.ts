#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, formatProblem, type ConfigProblem } from './config/errors.js';
import { VERSION } from './core/version.js';

/*
 * The CLI, and the only file that touches process.*: arguments, signals, exit codes.
 */

const HELP = `gatehouse ${VERSION} — a config-driven API gateway sidecar

Usage:
  gatehouse run [FILE | -c FILE]        run with FILE (default: $GATEHOUSE_CONFIG or config/gatehouse.yaml)
  gatehouse validate [FILE | -c FILE]   check FILE; print every problem as file:line:col path: message
      --env-optional                    an unset \${env:} variable, or a \${file:}, certificate or JWKS
                                        file that does not exist, is a placeholder: listed on stderr,
                                        its value not checked; everything else is (CI without secrets)
  gatehouse --version
  gatehouse --help

Signals (run): SIGHUP reloads the config; SIGTERM/SIGINT drain and stop.
`;

/** A command line that cannot be right: exit 2 with the reason and the usage. */
function usageError(message: string): number {
  process.stderr.write(`gatehouse: ${message}\n\n${HELP}`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'env-optional': { type: 'boolean' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return usageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`gatehouse ${VERSION}\n`);
    return 0;
  }
  const command = positionals[0] ?? (values.help ? 'help' : 'run');
  if (values.help || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command !== 'validate' && command !== 'run') return usageError(`unknown command '${command}'`);
  const [positional, ...extra] = positionals.slice(1);
  if (extra.length > 0) return usageError(`unexpected argument '${extra[0]}': ${command} takes one config file`);
  if (positional !== undefined && values.config !== undefined) {
    return usageError(`two config files given ('${values.config}' and '${positional}'): give FILE or -c FILE`);
  }
  if (values['env-optional'] === true && command !== 'validate') return usageError('--env-optional applies to validate only');
  const file = positional ?? values.config ?? process.env.GATEHOUSE_CONFIG ?? 'config/gatehouse.yaml';
  return command === 'validate' ? validate(file, values['env-optional'] === true) : run(file);
}

async function validate(file: string, envOptional: boolean): Promise<number> {
  const { loadConfigOffThread } = await import('./config/load-off-thread.js');
  const skippedNote = (skipped: readonly ConfigProblem[]) => {
    if (skipped.length > 0) process.stderr.write(`${skipped.map(formatProblem).join('\n')}\n`);
  };
  try {
    const { config, skipped } = await loadConfigOffThread(file, { envOptional });
    skippedNote(skipped);
    const unchecked = skipped.length > 0 ? `; ${skipped.length} value${skipped.length === 1 ? '' : 's'} not checked (--env-optional)` : '';
    process.stdout.write(
      `${file}: ok (${config.listeners.length} listeners, ${Object.keys(config.upstreams).length} upstreams, ${config.routes.length} routes${unchecked})\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      skippedNote(err.skipped);
      process.stderr.write(err.message + '\n');
      return 1;
    }
    throw err;
  }
}

async function run(file: string): Promise<number> {
  // Loaded here, not at the top: `validate` and `--version` need none of the proxy, OTel or stores.
  const { startGatehouse } = await import('./gatehouse.js');
  let gatehouse;
  try {
    gatehouse = await startGatehouse({ configFile: file, loadOffThread: true });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gatehouse: refusing to start, the config is invalid:\n${err.message}\n`);
      return 1;
    }
    process.stderr.write(`gatehouse: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const gh = gatehouse;
  process.on('SIGHUP', () => void gh.reload('signal'));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        // A second signal: stop now. The handler stays installed for this: as PID 1 in a container
        // a signal without a handler is ignored, so `once` would leave the second one unheard.
        gh.logger.warn({ signal }, 'second signal: exiting without waiting for the drain');
        resolve(128 + (signal === 'SIGINT' ? 2 : 15));
        return;
      }
      stopping = true;
      gh.logger.info({ signal }, 'shutting down');
      gh.shutdown().then(
        () => resolve(0),
        (err: unknown) => {
          gh.logger.error({ err: (err as Error).message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

// Exit explicitly: the run is over (drained and flushed) even if a library keeps a handle open.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`gatehouse: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
