// Where the time goes: a V8 CPU profile of the isolate that runs the user
// objects, during one pair run; prints the top functions by self and by
// inclusive samples. Build with KEEP_WASM_NAMES=1 so wasm frames have names:
//   KEEP_WASM_NAMES=1 npm run build && node bench/profile.mjs [--v1] [--n=5000]
import { inspect, startRustTarget } from "./runtime.mjs";
import { pairThroughput } from "./scenarios.mjs";

const v1 = process.argv.includes("--v1");
const n = Number(process.argv.find((a) => a.startsWith("--n="))?.slice(4) ?? 5000);
const target = await startRustTarget({ inspector: true, v1 });
try {
  await pairThroughput(target, { n: 500 });
  const cdp = await inspect(target.inspectorPort);
  await cdp.call("Profiler.enable");
  await cdp.call("Profiler.setSamplingInterval", { interval: 50 });
  await cdp.call("Profiler.start");
  const thr = await pairThroughput(target, { n, pair: 1 });
  const { profile } = await cdp.call("Profiler.stop");
  cdp.close();
  console.log(`${thr.msgPerSec.toFixed(0)} msg/s while profiling`);
  const nodes = profile.nodes;
  const total = nodes.reduce((a, x) => a + (x.hitCount ?? 0), 0);
  const name = (x) => `${x.callFrame.functionName || "(anonymous)"} ${x.callFrame.url.split("/").pop()}`.trim();
  const self = new Map();
  for (const x of nodes) self.set(name(x), (self.get(name(x)) ?? 0) + (x.hitCount ?? 0));
  const parent = new Map();
  for (const x of nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const byId = new Map(nodes.map((x) => [x.id, x]));
  const incl = new Map();
  for (const x of nodes) {
    const seen = new Set();
    for (let id = x.id; id !== undefined; id = parent.get(id)) {
      const k = name(byId.get(id));
      if (!seen.has(k)) {
        seen.add(k);
        incl.set(k, (incl.get(k) ?? 0) + (x.hitCount ?? 0));
      }
    }
  }
  const show = (title, m, count) => {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, count)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
  };
  show("self", self, 30);
  show("inclusive", incl, 40);
} finally {
  await target.close();
}
