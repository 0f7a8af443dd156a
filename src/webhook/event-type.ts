import type { WebhookConfig } from '../config/schema.js';
import { readKey, type SignedRequest } from './signature.js';

/** An event's type as its provider names it (`charge.succeeded`, `orders/create`, `push`); undefined when it names none. */
export type EventTypeReader = (req: SignedRequest) => string | undefined;

const TYPE_IN_BODY: EventTypeReader = (req) => readKey(req, { from: 'json', path: ['type'] });

/**
 * Where each provider puts the event type (SPEC §14): Stripe and Standard Webhooks in the JSON
 * body's `type`, Shopify in `X-Shopify-Topic`, GitHub in `X-GitHub-Event`; `hmac` where its
 * `eventType` says (none when unset). Read after the signature is verified, never before.
 */
export function compileEventType(cfg: WebhookConfig): EventTypeReader {
  switch (cfg.provider) {
    case 'stripe':
    case 'standard':
      return TYPE_IN_BODY;
    case 'shopify':
      return (req) => req.header('x-shopify-topic') || undefined;
    case 'github':
      return (req) => req.header('x-github-event') || undefined;
    case 'hmac': {
      const source = cfg.eventType;
      return source === undefined ? () => undefined : (req) => readKey(req, source);
    }
  }
}
