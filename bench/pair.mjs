// `node bench/pair.mjs [--rounds=N] [--n=N] [--latency=N] [--skip=a,b]`: the one-pair
// scenario of `npm run bench` alone (disk storage), every target interleaved
// over rounds, printed as medians and ratios to the JavaScript baselines of
// the same run. For an A/B of two builds: run it in each checkout, one after
// the other, and compare the ratios (absolute figures drift between runs).
import { TARGETS } from "./runtime.mjs";
import * as S from "./scenarios.mjs";

const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v = "true"] = a.replace(/^--/, "").split("="); return [k, v]; }));
const rounds = Number(args.rounds ?? 3);
const n = Number(args.n ?? 5000);
const latencyN = Number(args.latency ?? 1000);
// Targets left out (their keys in runtime.mjs); the JS queue baseline always runs.
const skip = new Set((args.skip ?? "").split(",").filter((k) => k && k !== "js-queue"));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const raw = {};
for (let round = 1; round <= rounds; round++) {
  for (const [name, t] of Object.entries(TARGETS).filter(([k]) => !skip.has(k))) {
    const target = await t.start({});
    try {
      const thr = await S.pairThroughput(target, { n });
      const lat = await S.pairLatency(target, { n: latencyN });
      (raw[name] ??= []).push({ msgPerSec: thr.msgPerSec, p50: lat.p50, p99: lat.p99 });
      console.log(`round ${round} ${name}: ${thr.msgPerSec.toFixed(0)} msg/s, p50 ${lat.p50.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms`);
    } finally {
      await target.close();
    }
  }
}
const med = Object.fromEntries(
  Object.entries(raw).map(([k, runs]) => [k, { msgPerSec: median(runs.map((r) => r.msgPerSec)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)) }]),
);
const q = med["js-queue"];
console.log("\n| target | msg/s | × JS queue | p50 ms | p99 ms | p99 × JS queue's |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const [k, m] of Object.entries(med)) {
  console.log(`| ${TARGETS[k].label} | ${m.msgPerSec.toFixed(0)} | ${(m.msgPerSec / q.msgPerSec).toFixed(2)} | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${(m.p99 / q.p99).toFixed(2)} |`);
}
process.exit(0);
