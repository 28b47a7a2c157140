// Fan-in to one user, counted in the real runtime (issue 25 part 2: inbox
// shards, docs/scale.md "A hot recipient").
//
// - Fan-in: `--senders` users (500) send to one online user over legacy
//   sockets. A warm-up (three messages each, one at a time) makes the
//   user hot and tells every sender so; then each sender sends `--each`
//   (20), one at a time (the next when `ok` came), all senders at once. Counted in that phase from `/api/metrics` deltas:
//   requests reaching the user's object per message (`deliver_hops` +
//   `inbox_batches`, the only requests it gets apart from its own
//   socket's), the same per second against the platform's soft limit of
//   about 1,000/s per object, deliveries taken by shards, and refusals
//   (error replies and `refused_*` counters). Every message must arrive at
//   the user once, each sender's in the order sent. `--hot-rate=0` runs the
//   same traffic with shards off, for comparison.
// - Pairs (`--pairs`): ordinary 1:1 traffic, `--pairs` (50) pairs each
//   sending `--each` (20) chats one at a time, recipients online: DO
//   requests, rows written (alarms included), D1 rows and Worker requests
//   per message. The unsharded path must cost what it cost before inbox
//   shards: run it from a checkout of the previous build as well (the
//   script needs only tests/harness.mjs and build/).
//
//   node bench/fan-in.mjs [--senders=500] [--each=20] [--hot-rate=500] [--shards=16] [--flush-ms=40]
//   node bench/fan-in.mjs --pairs[=50] [--each=20]
import WebSocket from "ws";
import { API_KEY, startWorker, token } from "../tests/harness.mjs";
import { metricsDelta } from "./runtime.mjs";

const arg = (name, dflt) => {
  const a = process.argv.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (!a) return dflt;
  const v = a.split("=")[1];
  return v === undefined ? true : v;
};
/** Messages each sender sends one at a time before the counted phase. */
const WARMUP = 3;
const diff = metricsDelta;

/** A legacy socket: `ok`/error replies counted, chats received kept in order. */
function client(w, uid) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(w.wsUrl(`/ws?token=${token(uid)}`), { perMessageDeflate: false });
    const c = { ws, oks: 0, errors: [], got: [], waiters: [] };
    const wake = () => {
      const ws2 = c.waiters;
      c.waiters = [];
      ws2.forEach((f) => f());
    };
    c.until = (pred) =>
      new Promise((res) => {
        const look = () => (pred(c) ? res() : c.waiters.push(look));
        look();
      });
    c.send = (to, message) => ws.send(JSON.stringify({ fromUser: uid, toUser: to, message }));
    c.close = () => new Promise((r) => (ws.readyState === WebSocket.CLOSED ? r() : (ws.once("close", r), ws.close())));
    ws.on("message", (d) => {
      const t = d.toString();
      if (t === "heartbeat") return;
      if (t === "ok") c.oks++;
      else if (t.startsWith("error")) c.errors.push(t);
      else c.got.push(JSON.parse(t));
      wake();
    });
    ws.once("open", () => resolve(c));
    ws.once("error", reject);
  });
}

async function start(bindings) {
  // Production settings but the per-user rates (the bench sends flat out).
  const w = await startWorker({
    bindings: { ARCHIVE_DELAY_MS: "30000", ARCHIVE_RETRY_MS: "1000", HISTORY_FLUSH_MS: "2000", SEND_RATE: "1000000", SEND_BURST: "1000000", INFLIGHT_SENDS: "100000", ...bindings },
  });
  w.counters = async () => (await w.fetch("/api/metrics", { headers: { authorization: `Bearer ${API_KEY}` } })).json();
  return w;
}

const refusals = (d) => Object.entries(d).filter(([k]) => k.startsWith("refused_")).reduce((s, [, v]) => s + v, 0);

/** Every message of each sender once, in the order sent. */
function checkOrder(got, senders, each) {
  const bySender = new Map(senders.map((s) => [s, []]));
  for (const m of got) bySender.get(m.fromUser)?.push(Number(m.message.split(":")[1]));
  let bad = 0;
  for (const [, ks] of bySender) if (ks.length !== each || ks.some((k, i) => k !== i)) bad++;
  return { received: got.length, sendersOutOfOrderOrIncomplete: bad };
}

async function fanIn({ senders: n, each, hotRate, shards, flushMs }) {
  const w = await start({ INBOX_HOT_RATE: String(hotRate), INBOX_SHARDS: String(shards), INBOX_FLUSH_MS: String(flushMs) });
  try {
    const to = "star";
    const senders = Array.from({ length: n }, (_, i) => `f${i}`);
    const star = await client(w, to);
    const cs = [];
    for (let i = 0; i < n; i += 50) cs.push(...(await Promise.all(senders.slice(i, i + 50).map((s) => client(w, s)))));
    // Warm-up: WARMUP messages each, one at a time.
    for (let k = 0; k < WARMUP; k++) {
      cs.forEach((c, i) => c.send(to, `${senders[i]}:${k}`));
      await Promise.all(cs.map((c) => c.until((x) => x.oks + x.errors.length >= k + 1)));
    }
    await star.until((x) => x.got.length >= WARMUP * n);
    const m0 = await w.counters();
    const t0 = performance.now();
    // Each sender one message at a time (the next once `ok` came), all at once.
    await Promise.all(
      cs.map(async (c, i) => {
        for (let k = WARMUP; k < WARMUP + each; k++) {
          c.send(to, `${senders[i]}:${k}`);
          await c.until((x) => x.oks + x.errors.length >= k + 1);
        }
      }),
    );
    await star.until((x) => x.got.length >= (WARMUP + each) * n - cs.reduce((s, c) => s + c.errors.length, 0));
    const ms = performance.now() - t0;
    const d = diff(m0, await w.counters());
    const messages = n * each;
    const atUser = (d.deliver_hops ?? 0) + (d.inbox_batches ?? 0);
    const errors = cs.reduce((s, c) => s + c.errors.length, 0);
    const order = checkOrder(star.got, senders, WARMUP + each);
    await Promise.all([star.close(), ...cs.map((c) => c.close())]);
    return {
      senders: n,
      each,
      hotRate,
      shards,
      flushMs,
      messages,
      ms: Math.round(ms),
      msgPerSec: Math.round((messages / ms) * 1000),
      atUserPerMessage: +(atUser / messages).toFixed(4),
      atUserPerSecond: Math.round((atUser / ms) * 1000),
      directHops: d.deliver_hops ?? 0,
      batches: d.inbox_batches ?? 0,
      shardHops: d.inbox_hops ?? 0,
      doRequestsPerMessage: +(((d.do_fetches ?? 0) + (d.do_alarms ?? 0)) / messages).toFixed(3),
      rowsPerMessage: +(((d.sql_rows_written ?? 0) + (d.alarms_set ?? 0)) / messages).toFixed(3),
      refusals: errors + refusals(d),
      ...order,
    };
  } finally {
    await w.close();
  }
}

async function pairs({ pairs: p, each }) {
  const w = await start({});
  try {
    const ends = [];
    for (let i = 0; i < p; i++) ends.push({ from: `p${2 * i}`, to: `p${2 * i + 1}` });
    // Users who have used the service: their objects and tables exist.
    for (const e of ends) for (const u of [e.from, e.to]) await (await client(w, u)).close();
    for (const e of ends) [e.a, e.b] = await Promise.all([client(w, e.from), client(w, e.to)]);
    const m0 = await w.counters();
    await Promise.all(
      ends.map(async (e) => {
        for (let k = 0; k < each; k++) {
          e.a.send(e.to, `${e.from}:${k}`);
          await e.a.until((x) => x.oks + x.errors.length >= k + 1);
        }
        await e.b.until((x) => x.got.length >= each);
      }),
    );
    const d = diff(m0, await w.counters());
    const messages = p * each;
    const per = (k) => +((d[k] ?? 0) / messages).toFixed(3);
    const errors = ends.reduce((s, e) => s + e.a.errors.length, 0);
    await Promise.all(ends.flatMap((e) => [e.a.close(), e.b.close()]));
    return {
      pairs: p,
      messages,
      doFetches: per("do_fetches"),
      doWsMessages: per("do_ws_messages"),
      workerRequests: per("worker_requests"),
      sqlRowsWritten: per("sql_rows_written"),
      alarmsSet: per("alarms_set"),
      d1RowsWritten: per("d1_rows_written"),
      errors,
    };
  } finally {
    await w.close();
  }
}

const each = Number(arg("each", 20));
if (arg("pairs", false)) {
  const p = arg("pairs") === true ? 50 : Number(arg("pairs"));
  console.log(JSON.stringify(await pairs({ pairs: p, each }), null, 1));
} else {
  const r = await fanIn({
    senders: Number(arg("senders", 500)),
    each,
    hotRate: Number(arg("hot-rate", 500)),
    shards: Number(arg("shards", 16)),
    flushMs: Number(arg("flush-ms", 40)),
  });
  console.log(JSON.stringify(r, null, 1));
}
