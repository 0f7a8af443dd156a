import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJson, sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * The application behind gatehouse: a tiny online store. Its checkout calls the payment
 * provider through gatehouse's *outbound* listener, as a real store would call Stripe through
 * its sidecar, and passes the trace context on so one trace covers both hops.
 */

export interface StoreOptions {
  readonly port: number;
  /** Where the store sends payments: gatehouse's outbound listener + the payments route. */
  readonly paymentsUrl: string;
}

const PRODUCTS = [
  { id: 'mug', name: 'Gatehouse mug', price: 1200 },
  { id: 'tee', name: 'Sidecar T-shirt', price: 2500 },
  { id: 'stickers', name: 'Sticker pack', price: 400 },
] as const;

type Product = (typeof PRODUCTS)[number];

/** Request headers the store passes on to the provider: trace context and the demo's fault switch. */
const PASS_ON = ['traceparent', 'tracestate', 'x-demo-fault'] as const;

export function startDemoStore(options: StoreOptions): Promise<DemoServer> {
  const cart = new Map<string, number>();
  const orders: unknown[] = [];
  const events: { id: string; type: string; attempt: string | undefined }[] = [];

  const cartView = () => {
    const items = [...cart].map(([id, quantity]) => {
      const product = PRODUCTS.find((p) => p.id === id)!;
      return { productId: id, name: product.name, quantity, price: product.price };
    });
    return { items, total: items.reduce((sum, i) => sum + i.price * i.quantity, 0), currency: 'eur' };
  };

  async function checkout(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.resume(); // the order comes from the cart; any body is ignored
    // An empty cart buys one mug, so `curl -X POST .../checkout` works on its own.
    const view = cart.size > 0 ? cartView() : { items: [{ productId: 'mug', quantity: 1 }], total: PRODUCTS[0].price, currency: 'eur' };
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      // the same key on every retry of this payment: a provider never charges it twice
      'idempotency-key': randomUUID(),
    };
    for (const name of PASS_ON) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    let answer: Response;
    try {
      answer = await fetch(options.paymentsUrl, { method: 'POST', headers, body: JSON.stringify({ amount: view.total, currency: view.currency }) });
    } catch (err) {
      return sendJson(res, 502, { error: 'payment failed', detail: `cannot reach ${options.paymentsUrl}: ${(err as Error).message}` });
    }
    const text = await answer.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    if (!answer.ok) {
      const gatehouseError = answer.headers.get('gatehouse-error');
      return sendJson(res, 502, {
        error: 'payment failed',
        payment: { status: answer.status, ...(gatehouseError ? { gatehouseError } : {}), body },
      });
    }
    const order = { id: `ord_${orders.length + 1}`, ...view, charge: body };
    orders.push(order);
    cart.clear();
    return sendJson(res, 201, order);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://store');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/products' && method === 'GET') return sendJson(res, 200, { products: PRODUCTS });
    const product = /^\/products\/([\w-]+)$/.exec(path);
    if (product && method === 'GET') {
      const found = PRODUCTS.find((p: Product) => p.id === product[1]);
      return found ? sendJson(res, 200, found) : sendJson(res, 404, { error: `no product '${product[1]}'` });
    }
    if (path === '/cart' && method === 'GET') return sendJson(res, 200, cartView());
    if (path === '/cart' && method === 'POST') {
      const body = await readJson(req);
      const id = typeof body?.productId === 'string' ? body.productId : '';
      const quantity = body?.quantity === undefined ? 1 : Number(body.quantity);
      if (!PRODUCTS.some((p) => p.id === id) || !Number.isInteger(quantity) || quantity < 1) {
        return sendJson(res, 400, { error: `send {"productId": one of ${PRODUCTS.map((p) => p.id).join(', ')}, "quantity": n}` });
      }
      cart.set(id, (cart.get(id) ?? 0) + quantity);
      return sendJson(res, 200, cartView());
    }
    if (path === '/cart' && method === 'DELETE') {
      cart.clear();
      return sendJson(res, 200, cartView());
    }
    if (path === '/checkout' && method === 'POST') return checkout(req, res);
    if (path === '/orders' && method === 'GET') return sendJson(res, 200, { orders });
    // Behind the JWT route: gatehouse verified the token and forwards its `sub` as x-user-id.
    if (path === '/account' && method === 'GET') {
      const user = req.headers['x-user-id'];
      return sendJson(res, 200, { user: typeof user === 'string' ? user : null, orders: orders.length, memberSince: '2024-03-01' });
    }
    // Stripe's events, verified and de-duplicated by gatehouse before they get here.
    if (path === '/webhooks/stripe' && method === 'POST') {
      const event = await readJson(req);
      const attempt = req.headers['gatehouse-webhook-attempt'];
      events.push({ id: String(event?.id), type: String(event?.type), attempt: typeof attempt === 'string' ? attempt : undefined });
      return sendJson(res, 200, { received: event?.id ?? null });
    }
    if (path === '/webhooks' && method === 'GET') return sendJson(res, 200, { events });
    return sendJson(res, 404, { error: `no such page ${method} ${path}` });
  }

  return startHttpServer(options.port, handle);
}
