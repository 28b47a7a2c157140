import WebSocket from "ws";
import { startWorker, token } from "/work/main/tests/harness.mjs";
import { pairThroughput, pairLatency } from "/work/main/bench/scenarios.mjs";
const w = await startWorker({ extra: { inspectorPort: 9333 } });
const t = { wsUrl: (uid) => w.wsUrl(`/ws?token=${token(uid)}`) };
await pairThroughput(t, { n: 500 });
const list = await (await fetch("http://127.0.0.1:9333/json")).json();
console.log(list.map(x => x.title + " " + x.webSocketDebuggerUrl));
const target = list.find(x => /core:user/.test(x.title)) ?? list[0];
const cdp = new WebSocket(target.webSocketDebuggerUrl);
await new Promise(r => cdp.once("open", r));
let id = 0; const pending = new Map();
cdp.on("message", d => { const m = JSON.parse(d); if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); } });
const call = (method, params = {}) => new Promise(r => { const i = ++id; pending.set(i, r); cdp.send(JSON.stringify({ id: i, method, params })); });
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
const thr = await pairLatency(t, { n: 1500 }); thr.msgPerSec = thr.p50;
const res = await call("Profiler.stop");
console.log("msg/s during profile", thr.msgPerSec.toFixed(0));
const nodes = res.result.profile.nodes;
const total = nodes.reduce((a, n) => a + (n.hitCount || 0), 0);
const self = new Map();
for (const n of nodes) { const k = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").pop()}:${n.callFrame.lineNumber}`; self.set(k, (self.get(k) || 0) + (n.hitCount || 0)); }
const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 45);
for (const [k, v] of top) console.log((100 * v / total).toFixed(1).padStart(5) + "%  " + k);
// inclusive time by top-level wasm export / handler
const byId = new Map(nodes.map(n => [n.id, n]));
const parent = new Map(); for (const n of nodes) for (const c of n.children || []) parent.set(c, n.id);
const incl = new Map();
for (const n of nodes) { const seen = new Set(); let cur = n.id; while (cur !== undefined) { const f = byId.get(cur).callFrame.functionName || "(anon)"; if (!seen.has(f)) { seen.add(f); incl.set(f, (incl.get(f) || 0) + (n.hitCount || 0)); } cur = parent.get(cur); } }
console.log("---- inclusive");
for (const [k, v] of [...incl.entries()].sort((a, b) => b[1] - a[1]).slice(0, 60)) console.log((100 * v / total).toFixed(1).padStart(5) + "%  " + k);
cdp.close(); await w.close();
