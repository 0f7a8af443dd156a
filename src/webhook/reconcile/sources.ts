import type { EventSource } from './source.js';
import { stripeEvents } from './stripe.js';

/** Every provider whose event list gatehouse can reconcile against, by `webhook.provider`. */
const SOURCES: ReadonlyMap<string, EventSource> = new Map([[stripeEvents.provider, stripeEvents]]);

/** The provider's event source; undefined when it has none (the config refuses `reconcile` then). */
export const eventSourceOf = (provider: string): EventSource | undefined => SOURCES.get(provider);
