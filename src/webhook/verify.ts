import type { WebhookConfig } from '../config/schema.js';
import { checkGithubHeaders, compileGithub } from './providers/github.js';
import { checkHmacHeaders, compileHmac } from './providers/hmac.js';
import { checkShopifyHeaders, compileShopify } from './providers/shopify.js';
import { checkStandardHeaders, compileStandard } from './providers/standard.js';
import { checkStripeHeaders, compileStripe } from './providers/stripe.js';
import { keyOf, type HeaderCheck, type Verifier } from './signature.js';

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

/** What the provider's headers alone can refuse, before the body is read (SPEC §3.1). */
export function compileHeaderCheck(cfg: WebhookConfig): HeaderCheck {
  switch (cfg.provider) {
    case 'stripe':
      return checkStripeHeaders(cfg.tolerance);
    case 'shopify':
      return checkShopifyHeaders;
    case 'github':
      return checkGithubHeaders;
    case 'standard':
      return checkStandardHeaders(cfg.tolerance);
    case 'hmac':
      return checkHmacHeaders(cfg);
  }
}
