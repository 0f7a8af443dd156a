// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by file, and the
// inclusive time of gatehouse's own functions, to see where a request's CPU goes.
//   node bench/profile-summary.mjs FILE.cpuprofile [TOP=40]
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
const top = Number(topArg ?? 40);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
}
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const short = (url) => url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/').replace(/^node:/, '');
const nameOf = (n) => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
let total = 0;
const byFn = new Map();
const byFile = new Map();
const inclusive = new Map();
for (const [id, us] of selfUs) {
  total += us;
  const n = nodes.get(id);
  byFn.set(nameOf(n), (byFn.get(nameOf(n)) ?? 0) + us);
  const f = short(n.callFrame.url) || n.callFrame.functionName;
  byFile.set(f, (byFile.get(f) ?? 0) + us);
  const seen = new Set();
  for (let p = id; p !== undefined; p = parent.get(p)) {
    const pn = nodes.get(p);
    if (!pn.callFrame.url.includes('/dist/')) continue;
    const key = nameOf(pn);
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}
const print = (title, map) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((us / total) * 100).toFixed(1).padStart(6)}%  ${k}`);
};
console.log(`total ${(total / 1e6).toFixed(2)} s sampled`);
print('self time by function', byFn);
print('self time by file', byFile);
print('inclusive time of gatehouse functions', inclusive);
