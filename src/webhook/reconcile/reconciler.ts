import type { Logger } from 'pino';
import type { ReconcileConfig } from '../../config/schema.js';
import type { Clock } from '../../core/clock.js';
import type { UpstreamClient } from '../../core/upstream.js';
import { ReconcileError, type EventSource, type ListedEvent } from './source.js';

/** What feeding one listed event came to: new to the route (stored, to be delivered) or known. */
export type FeedResult = 'stored' | 'duplicate';

/** One listing's outcome. */
export interface ReconcileReport {
  /** Events the provider listed (young ones included). */
  readonly listed: number;
  /** Events never received before, now stored for delivery with `source: reconcile`. */
  readonly reconciled: number;
  /** Why the listing stopped early; undefined when it went through. */
  readonly error: string | undefined;
}

export interface ReconcileObserver {
  /** A listing ended; `report.reconciled` events were fed in. */
  reconciled(route: string, report: ReconcileReport): void;
}

export interface ReconcilerOptions {
  readonly route: string;
  readonly cfg: ReconcileConfig;
  readonly source: EventSource;
  /** The `reconcile.upstream`, as the live plan has it (a reload may change it). */
  readonly client: () => UpstreamClient;
  /**
   * Stores a listed event as if its webhook had arrived — de-duplicated by its id in the same
   * atomic step, so the webhook that comes later (or came first) is the duplicate, never a
   * second delivery. Rejects when the store cannot take it (the next listing tries again).
   */
  readonly feed: (event: ListedEvent) => Promise<FeedResult>;
  /** Bounds each page request. */
  readonly timeoutMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observer: ReconcileObserver;
}

export interface Reconciler {
  /** Lists once now (a listing in progress is waited for instead of started twice). */
  run(): Promise<ReconcileReport>;
  /** Lists now, then every `reconcile.every`. */
  start(): void;
  /** Stops the schedule and aborts a listing in progress. */
  stop(): Promise<void>;
}

/**
 * The provider-neutral half of reconciliation (SPEC §14): every `every`, list the events created
 * within `lookback` through the source, leave the ones younger than `settle` to their webhook,
 * and feed the rest to the route; the store's de-duplication decides which were never received.
 */
export function createReconciler(o: ReconcilerOptions): Reconciler {
  const { route, cfg, source, clock, logger } = o;
  let running: Promise<ReconcileReport> | undefined;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  async function listOnce(signal: AbortSignal): Promise<ReconcileReport> {
    const now = clock.now();
    const youngest = now - cfg.settle;
    let listed = 0;
    let reconciled = 0;
    try {
      for await (const event of source.list(o.client(), { route, sinceMs: now - cfg.lookback, timeoutMs: o.timeoutMs, signal })) {
        listed++;
        if (event.createdMs > youngest) continue;
        if ((await o.feed(event)) === 'stored') reconciled++;
      }
      return { listed, reconciled, error: undefined };
    } catch (err) {
      const message = err instanceof ReconcileError ? err.message : `could not store a listed event: ${(err as Error).message}`;
      return { listed, reconciled, error: message };
    }
  }

  function run(): Promise<ReconcileReport> {
    running ??= (async () => {
      controller = new AbortController();
      const report = await listOnce(controller.signal);
      o.observer.reconciled(route, report);
      if (report.error !== undefined) {
        logger.warn({ route, provider: source.provider, listed: report.listed, reconciled: report.reconciled, err: report.error }, 'reconciliation stopped early; the next one tries again');
      } else if (report.reconciled > 0) {
        logger.info({ route, provider: source.provider, listed: report.listed, reconciled: report.reconciled }, 'reconciliation found events whose webhook never came');
      }
      return report;
    })().finally(() => {
      running = undefined;
      controller = undefined;
    });
    return running;
  }

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      run().then(
        () => schedule(cfg.every),
        (err: unknown) => {
          logger.error({ route, err: (err as Error).message }, 'reconciliation failed');
          schedule(cfg.every);
        },
      );
    }, delayMs);
    timer.unref();
  }

  return {
    run,
    start: () => schedule(0),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      controller?.abort(new Error('gatehouse is stopping'));
      await running;
    },
  };
}
