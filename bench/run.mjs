// `npm run bench`: runs the targets through every scenario, interleaved over
// several rounds, then writes bench/results/latest.json, the plots under
// docs/bench/ and docs/benchmarks.md. Figures that matter are ratios to the
// JavaScript baselines measured in the same run.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT } from "../tests/harness.mjs";
import { WRITER, capacity, configuredShards } from "./capacity.mjs";
import { PRICES, costPerMillion } from "./prices.mjs";
import { groupCosts } from "./groups.mjs";
import { editCosts, presenceCosts } from "./presence.mjs";
import { pushCosts } from "./push.mjs";
import { CROWD_TARGETS, startRoomTarget, startRustTarget, TARGETS } from "./runtime.mjs";
import * as S from "./scenarios.mjs";

const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v = "true"] = a.replace(/^--/, "").split("="); return [k, v]; }));
const rounds = Number(args.rounds ?? 3);
const n = Number(args.n ?? 5000);
const latencyN = Number(args.latency ?? 1000);
const quick = args.quick !== undefined;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const log = (...a) => console.log(...a);
const save = () => {
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "results", "latest.json"), JSON.stringify(results, null, 2));
};
/** Bytes of the files under `dir` whose names match `re`. */
function fileBytes(dir, re) {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir, { withFileTypes: true }).reduce((sum, e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sum + fileBytes(p, re);
    return sum + (re.test(e.name) ? statSync(p).size : 0);
  }, 0);
}
const miniflare = JSON.parse(readFileSync(join(ROOT, "node_modules", "miniflare", "package.json"), "utf8")).version;
const results = { when: new Date().toISOString(), cmd: `npm run bench${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}`, rounds, n, latencyN, node: process.version, miniflare };

// 1. One pair, on disk and on tmpfs, every target, interleaved.
const storages = { disk: undefined };
if (existsSync("/dev/shm")) storages.tmpfs = "/dev/shm";
results.pair = {};
for (const [storage, storageDir] of Object.entries(storages)) {
  const raw = {};
  for (let round = 1; round <= rounds; round++) {
    for (const [name, t] of Object.entries(TARGETS)) {
      const target = await t.start({ storageDir });
      try {
        const thr = await S.pairThroughput(target, { n });
        const lat = await S.pairLatency(target, { n: latencyN });
        (raw[name] ??= []).push({ thr, lat });
        log(`pair ${storage} round ${round} ${name}: ${thr.msgPerSec.toFixed(0)} msg/s, p50 ${lat.p50.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms`);
      } finally {
        await target.close();
      }
    }
  }
  results.pair[storage] = Object.fromEntries(
    Object.entries(raw).map(([name, runs]) => [
      name,
      {
        msgPerSec: median(runs.map((r) => r.thr.msgPerSec)),
        p50: median(runs.map((r) => r.lat.p50)),
        p99: median(runs.map((r) => r.lat.p99)),
        p999: median(runs.map((r) => r.lat.p999)),
        rounds: runs.map((r) => ({ msgPerSec: r.thr.msgPerSec, p50: r.lat.p50, p99: r.lat.p99 })),
        samples: runs.at(-1).lat.samples,
      },
    ]),
  );
}

save();

// 2. Fan-in and many pairs, interleaved.
const crowd = {};
for (let round = 1; round <= rounds; round++) {
  for (const name of CROWD_TARGETS) {
    const target = await TARGETS[name].start();
    try {
      const fan = await S.fanIn(target, quick ? { senders: 20, each: 20 } : {});
      const many = await S.manyPairs(target, quick ? { pairs: 20, each: 20 } : {});
      (crowd[name] ??= []).push({ fan, many });
      log(`crowd round ${round} ${name}: fan-in ${fan.msgPerSec.toFixed(0)} msg/s (${fan.errors} errors), 100 pairs ${many.msgPerSec.toFixed(0)} msg/s`);
    } finally {
      await target.close();
    }
  }
}
results.crowd = Object.fromEntries(
  Object.entries(crowd).map(([name, runs]) => [
    name,
    {
      fanIn: { msgPerSec: median(runs.map((r) => r.fan.msgPerSec)), errors: Math.max(...runs.map((r) => r.fan.errors)), senders: runs[0].fan.senders, total: runs[0].fan.total },
      manyPairs: { msgPerSec: median(runs.map((r) => r.many.msgPerSec)), errors: Math.max(...runs.map((r) => r.many.errors)), pairs: runs[0].many.pairs, total: runs[0].many.total },
    },
  ]),
);

save();

// 2b. Realistic traffic: many users, each sending now and then, both online
// and with recipients offline; counted per message like the burst.
{
  const target = await startRustTarget();
  try {
    const opts = quick ? { pairs: 20, seconds: 10 } : {};
    results.sparse = {
      online: await S.sparseTraffic(target, { ...opts, base: 6000 }),
      offline: await S.sparseTraffic(target, { ...opts, offline: true, base: 8000 }),
    };
    // D1 storage per message: the bytes of the history rows over every shard
    // (integers as 8 bytes, no page overhead; no secondary index), and the
    // local files (WAL included, an upper bound).
    const messages = results.sparse.online.total + results.sparse.offline.total;
    const rowBytes =
      "length(conv) + length(id) + COALESCE(length(sender), 0) + COALESCE(length(recipient), 0) + length(body) + 5 * 8";
    const bytes = (await target.worker.historyRows()).length
      ? (await Promise.all(
          (await target.worker.shards()).map(async (db) => {
            let sum = 0;
            for (const { tbl } of (await db.prepare("SELECT tbl FROM partitions").all()).results) {
              sum += (await db.prepare(`SELECT COALESCE(SUM(${rowBytes}), 0) AS b FROM ${tbl}`).first()).b;
            }
            return sum;
          }),
        )).reduce((a, b) => a + b, 0)
      : 0;
    const fileBytesTotal = fileBytes(join(target.worker.persistDir, "d1"), /\.sqlite(-wal)?$/);
    results.sparse.d1 = { bytes, fileBytes: fileBytesTotal, messages, bytesPerMessage: bytes / messages, fileBytesPerMessage: fileBytesTotal / messages };
  } finally {
    await target.close();
  }
  // The steady state: logs already at their cap, so every entry prunes one.
  const steady = await startRustTarget({ bindings: { LOG_CAP: "64" } });
  try {
    const opts = quick ? { pairs: 20, seconds: 10 } : {};
    results.sparse.steady = await S.sparseTraffic(steady, { ...opts, base: 10000, prefill: 100 });
  } finally {
    await steady.close();
  }
  for (const [k, v] of Object.entries(results.sparse).filter(([k]) => k !== "d1")) {
    log(`sparse ${k}: ${v.total} messages, ${v.delivered} delivered, ${v.errors} errors, per message ${JSON.stringify(v.perMsg)}`);
  }
}

save();

// 2c. The push webhook's cost per message, off and on.
results.push = await pushCosts(quick ? { users: 10, each: 2 } : {});
log(`push: ${JSON.stringify(results.push)}`);
save();

// 2d. Presence flips (0, 1, 100 watchers) and edits, counted.
results.presence = await presenceCosts(quick ? { rounds: 1 } : {});
results.edits = await editCosts(quick ? { n: 10 } : {});
log(`presence: ${JSON.stringify(results.presence)} edits: ${JSON.stringify(results.edits)}`);
save();

// 2e. Groups: a group's fan-out with 10, 50 and 100 members online, and
// realistic traffic in a group of 100, counted per group message.
results.groups = await groupCosts({ ...(quick ? { burst: { seconds: 3 }, sparse: { seconds: 10 } } : {}), log });
results.groups.cmd = results.cmd;
save();

// 3. edge-chat alone: backlog, history, idle sockets, memory, counts, cold start.
{
  const target = await startRustTarget({ inspector: true });
  try {
    results.backlog = await S.backlog(target, quick ? { n: 2000 } : {});
    log(`backlog: ${results.backlog.n} queued, delivered ${results.backlog.ms.toFixed(0)} ms after connect`);
    results.idle = await S.idleConnections(target, quick ? { n: 200 } : {});
    log(`idle sockets: ${results.idle.perSec.toFixed(0)}/s, ${(results.idle.bytesPerConnection / 1024).toFixed(1)} KiB each, ${results.idle.heartbeatWakeups} wake-ups for ${results.idle.heartbeats} heartbeats`);
    results.counts = await S.billableCounts(target, { n });
    log(`counts: ${JSON.stringify(results.counts.counts)}`);
    results.memory = await S.memoryOverTime(target, { rounds: quick ? 3 : 10, n });
    log(`memory: ${results.memory.map((m) => `${m.rssMB.toFixed(0)}/${m.heapMB.toFixed(1)}/${m.wasmMB.toFixed(1)}`).join(" ")}`);
  } finally {
    await target.close();
  }
  // History paging: logs capped at 1,000 entries, so older pages are D1's.
  const paging = await startRustTarget({ bindings: { LOG_CAP: "1000", ARCHIVE_DELAY_MS: "1000" } });
  try {
    results.history = await S.historyPaging(paging, quick ? { rows: 20000 } : {});
    log(`history: first page p50 ${results.history.first.p50.toFixed(1)} ms, page 100 p50 ${results.history.page100.p50.toFixed(1)} ms, rows read ${JSON.stringify(results.history.rowsReadPerPage)}`);
  } finally {
    await paging.close();
  }
  const cold = [];
  for (let i = 0; i < 3; i++) cold.push(await S.coldStart(() => startRustTarget()));
  results.coldStart = { readyMs: median(cold.map((c) => c.readyMs)), firstUpgradeMs: median(cold.map((c) => c.firstUpgradeMs)) };
  log(`cold start: runtime ready ${results.coldStart.readyMs.toFixed(0)} ms, first upgrade ${results.coldStart.firstUpgradeMs.toFixed(0)} ms`);
}

// 4. The reference room design, counted the same way.
{
  const room = await startRoomTarget();
  try {
    const before = await room.metrics();
    const thr = await S.pairThroughput(room, { n, warmup: 0 });
    const after = await room.metrics();
    const lat = await S.pairLatency(room, { n: Math.min(latencyN, 500) });
    results.room = { msgPerSec: thr.msgPerSec, p50: lat.p50, counts: Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])) };
  } finally {
    await room.close();
  }
}

save();

// 5. Bundle, as wrangler would upload it.
try {
  const out = join(ROOT, "build", "dry-run");
  rmSync(out, { recursive: true, force: true });
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", out], { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, stdio: "pipe" });
  results.bundle = readdirSync(out)
    .filter((f) => /\.(wasm|js|mjs)$/.test(f))
    .map((f) => ({ file: f, bytes: statSync(join(out, f)).size, gzip: gzipSync(readFileSync(join(out, f))).length }));
} catch (e) {
  log(`bundle check failed: ${e.message.split("\n")[0]}`);
  results.bundle = [];
}

// Cost model.
{
  const c = results.counts.counts;
  const stored = c.messages_stored;
  const perMsg = Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v / stored]));
  const latency = results.pair.disk.rust;
  // Sparse traffic: each message keeps the sender's and the recipient's object
  // active for about one delivery (p50 latency); saturated: two objects active
  // all the time, shared by msgPerSec messages.
  const activeSecondsPerMsg = (2 * latency.p50) / 1000;
  const burst = costPerMillion(perMsg, activeSecondsPerMsg);
  const saturated = costPerMillion(perMsg, 2 / results.counts.msgPerSec);
  // Sparse traffic is counted per message sent (every one was stored for its recipient).
  // An archive pass keeps its user's object active while it waits for the
  // writer's flush: half the flush interval on average, per alarm.
  const withPasses = (perMsg) => activeSecondsPerMsg + ((perMsg.do_alarms ?? 0) * WRITER.flushSeconds) / 2;
  const sparseOnline = costPerMillion(results.sparse.online.perMsg, withPasses(results.sparse.online.perMsg));
  const sparseOffline = costPerMillion(results.sparse.offline.perMsg, withPasses(results.sparse.offline.perMsg));
  const sparseSteady = costPerMillion(results.sparse.steady.perMsg, withPasses(results.sparse.steady.perMsg));
  const r = results.room.counts;
  const roomPerMsg = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v / r.messages_stored]));
  const roomSparse = costPerMillion(roomPerMsg, results.room.p50 / 1000);
  results.cost = { perMsg, burst, saturated, sparseOnline, sparseOffline, sparseSteady, roomPerMsg, roomSparse, prices: PRICES };
  results.capacity = capacity({
    shards: configuredShards(ROOT),
    perMsg: results.sparse.online.perMsg,
    d1BytesPerMsg: results.sparse.d1.bytesPerMessage,
    activeSecondsPerMsg: withPasses(results.sparse.online.perMsg),
  });
}

save();
const py = join(ROOT, "bench", ".venv", "bin", "python");
let plots = false;
try {
  execFileSync(existsSync(py) ? py : "python3", [join(ROOT, "bench", "plot.py")], { cwd: ROOT, stdio: "inherit" });
  plots = true;
} catch (e) {
  log(`plots skipped: ${e.message}`);
}
writeFileSync(join(ROOT, "docs", "benchmarks.md"), (await import("./report.mjs")).report(results, { plots, cpu: cpus()[0]?.model ?? "unknown CPU", cores: cpus().length, memGb: totalmem() / 2 ** 30 }));
log("wrote docs/benchmarks.md");
