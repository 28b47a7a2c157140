// `node bench/ab.mjs <other checkout> [rounds]`: an A/B of the Rust pair
// between this checkout and another one (both built), interleaved in one
// process: each round runs both, in alternating order, legacy and v1, and
// the ratio this/other is taken per round. On a shared 2-core machine one
// run's figures drift by ±20 % between runs, so compare the per-round
// ratios' median, not two separate `npm run bench` reports.
import { resolve } from "node:path";
import { ROOT } from "../tests/harness.mjs";

const other = process.argv[2];
if (!other) {
  console.error("usage: node bench/ab.mjs <other checkout, built> [rounds]");
  process.exit(2);
}
const rounds = Number(process.argv[3] ?? 8);
const trees = { other: resolve(other), this: ROOT };
const load = async (root) => ({ runtime: await import(`${root}/bench/runtime.mjs`), scenarios: await import(`${root}/bench/scenarios.mjs`) });
const mods = { other: await load(trees.other), this: await load(trees.this) };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = {};
for (let r = 0; r < rounds; r++) {
  for (const v1 of [false, true]) {
    for (const k of r % 2 ? ["this", "other"] : ["other", "this"]) {
      const t = await mods[k].runtime.startRustTarget({ v1 });
      try {
        const thr = await mods[k].scenarios.pairThroughput(t, { n: 3000 });
        const lat = await mods[k].scenarios.pairLatency(t, { n: 500 });
        (runs[`${k}${v1 ? " v1" : ""}`] ??= []).push({ thr: thr.msgPerSec, p99: lat.p99 });
        console.log(`round ${r + 1} ${k}${v1 ? " v1" : ""}: ${thr.msgPerSec.toFixed(0)} msg/s, p99 ${lat.p99.toFixed(2)} ms`);
      } finally {
        await t.close();
      }
    }
  }
}
for (const mode of ["", " v1"]) {
  const [a, b] = [runs[`this${mode}`], runs[`other${mode}`]];
  const thr = a.map((x, i) => x.thr / b[i].thr);
  const p99 = a.map((x, i) => x.p99 / b[i].p99);
  console.log(
    `${mode ? "v1" : "legacy"}: this/other msg/s, median of ${rounds} rounds ${median(thr).toFixed(3)} [${thr.map((x) => x.toFixed(2)).join(" ")}]; p99 ${median(p99).toFixed(3)}`,
  );
}
process.exit(0);
