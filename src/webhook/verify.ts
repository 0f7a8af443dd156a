import type { WebhookConfig } from '../config/schema.js';
import { compileGithub } from './providers/github.js';
import { compileHmac } from './providers/hmac.js';
import { compileShopify } from './providers/shopify.js';
import { compileStandard } from './providers/standard.js';
import { compileStripe } from './providers/stripe.js';
import { keyOf, type Verifier } from './signature.js';

/** The provider's verifier, with every secret turned into a key once. */
export function compileVerifier(cfg: WebhookConfig): Verifier {
  const secrets = cfg.secrets ?? [cfg.secret!];
  const keys = secrets.map((s) => keyOf(Buffer.from(s.reveal())));
  switch (cfg.provider) {
    case 'stripe':
      return compileStripe(keys, cfg.tolerance);
    case 'shopify':
      return compileShopify(keys);
    case 'github':
      return compileGithub(keys);
    case 'standard':
      // Standard Webhooks: the key is the base64 after `whsec_` (checked by the schema).
      return compileStandard(secrets.map((s) => keyOf(Buffer.from(s.reveal().replace(/^whsec_/, ''), 'base64'))), cfg.tolerance);
    case 'hmac':
      return compileHmac(keys, cfg);
  }
}
