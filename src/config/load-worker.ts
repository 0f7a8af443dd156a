import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from './errors.js';
import { loadConfigFile } from './load.js';
import { STARTED, toTransferable, type LoadAnswer, type LoadRequest } from './load-off-thread.js';

/* The worker thread of `loadConfigOffThread`: says it has started, loads one config file and answers once. */

const { file, env, envOptional } = workerData as LoadRequest;
parentPort!.postMessage(STARTED); // the modules above are loaded: the time limit starts now
let answer: LoadAnswer;
try {
  answer = { ok: true, loaded: toTransferable(loadConfigFile(file, { env, envOptional })) };
} catch (err) {
  if (!(err instanceof ConfigError)) throw err; // a bug: the 'error' event reports it
  answer = { ok: false, problems: err.problems, skipped: err.skipped };
}
parentPort!.postMessage(answer);
