// `npm run bench:regex`: what a `pathRegex` route pays per match on RE2 (re2js, linear time)
// against V8's backtracking engine, for typical route patterns and paths, and the ReDoS case that
// made RE2 necessary (V8 is skipped there: it would take seconds). Per-match cost of a
// single-threaded loop; run it on a quiet machine, compare ratios rather than absolute values.
import { performance } from 'node:perf_hooks';
import { compileLinearRegex } from '../dist/core/regex.js';

const CASES = [
  { pattern: '/orders/[0-9]+', path: '/orders/123456' },
  { pattern: '/api/v[12]/products/[a-z0-9-]+', path: '/api/v2/products/blue-shirt-42' },
  { pattern: '/(en|de|fr)/catalog/.*', path: '/de/catalog/shoes/running/women?size=38' },
  { pattern: '/static/.+\\.(css|js|png)', path: '/static/assets/app.3f9a1c.min.js' },
  { pattern: '/(a+)+', path: `/${'a'.repeat(30)}!`, redos: true },
];

function perMatch(fn, input) {
  for (let i = 0; i < 20_000; i++) fn(input); // warm-up: let the JIT settle
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < 500) {
    for (let i = 0; i < 1000; i++) fn(input);
    n += 1000;
  }
  return ((performance.now() - start) * 1000) / n; // µs per match
}

console.log('| pattern | path | RE2 (re2js) µs/match | V8 RegExp µs/match |');
console.log('|---|---|---:|---:|');
for (const c of CASES) {
  const re2 = compileLinearRegex(c.pattern);
  const v8 = new RegExp(`^(?:${c.pattern})$`);
  const a = perMatch(re2, c.path);
  const b = c.redos ? 'seconds (skipped)' : perMatch((s) => v8.test(s), c.path).toFixed(3);
  console.log(`| \`${c.pattern}\` | \`${c.path.length > 40 ? c.path.slice(0, 37) + '…' : c.path}\` | ${a.toFixed(3)} | ${b} |`);
}
