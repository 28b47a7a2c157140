// What a group message costs and how fast a group's object fans it out,
// counted in the real runtime (issue 15).
//
// Every member of the group is online: one v1 socket each, acking what it
// receives the way the shipped client does (`client/src/client.ts`,
// `ackDelayMs` 20: one ack of the highest seq 20 ms after the first
// unacked frame).
//
// - Burst, for 10, 50 and 100 members: a few members (`senders`) send
//   group messages over their sockets, each keeping `window` sends
//   outstanding (a new one as soon as one is answered), for `seconds`.
//   Measured: sends answered per second, messages fully fanned out per
//   second (every member has it), and per message the time from the send
//   frame leaving the bench process to the LAST member's socket receiving
//   it (timestamps in this process; the message carries its number).
// - Realistic, 100 members: one message about every 200 ms (100 to
//   300 ms apart, open loop) from a random member, for one archive delay
//   (30 s), so every member's archive pass falls in the window once, as in
//   the steady state.
//
// Counted per group message from `/api/metrics` deltas: DO requests
// (fetches and alarm runs), DO WebSocket messages, DO SQLite rows written
// and alarms set (billed alike), D1 statements and rows. Group history is
// kept in the group object's SQLite; members' logs hold a copy each, which
// never goes to D1. Dollars per million group messages at list prices
// (`bench/prices.mjs`), and per member.
//
// `npm run bench` runs it (`results.groups`); `node bench/groups.mjs` runs
// it alone and prints the tables; `--out=FILE` writes the results JSON,
// `--render=FILE` prints the tables of such a file without running.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { token } from "../tests/harness.mjs";
import { PRICES, costPerMillion } from "./prices.mjs";
import { metricsDelta, pct, startRust } from "./runtime.mjs";

export const MEMBER_COUNTS = [10, 50, 100];
/** The shipped client's ack delay (`ackDelayMs`). */
export const ACK_DELAY_MS = 20;
/** Production's archive delay (`wrangler.toml`). */
const ARCHIVE_DELAY_MS = 30_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const diff = metricsDelta;

/**
 * A member's v1 device: acks like the shipped client, reports each group
 * message's receipt (`onGroup(n, body)`), and answers its own `group` requests.
 */
export function member(t, uid, onGroup) {
  return new Promise((resolve, reject) => {
    const q = new URLSearchParams({ token: token(uid), device: "bench" });
    const ws = new WebSocket(t.worker.wsUrl(`/ws?${q}`), ["chat.v1"], { perMessageDeflate: false });
    const m = { uid, ws, seq: 0, acked: 0, acks: 0, frames: 0, pending: new Map(), nextId: 0, errors: 0 };
    let ackTimer = null;
    const ack = () => {
      ackTimer = null;
      if (m.seq > m.acked && ws.readyState === WebSocket.OPEN) {
        ws.send(`{"op":"ack","up_to":${m.seq}}`);
        m.acked = m.seq;
        m.acks++;
      }
    };
    m.request = (frame) =>
      new Promise((res) => {
        const id = `b${++m.nextId}`;
        m.pending.set(id, res);
        ws.send(JSON.stringify({ ...frame, id }));
      });
    m.close = () => new Promise((r) => (ws.readyState === WebSocket.CLOSED ? r() : (ws.once("close", r), ws.close())));
    ws.on("message", (data) => {
      const text = data.toString();
      if (text === "heartbeat") return;
      const f = JSON.parse(text);
      m.frames++;
      if (f.op === "msg") {
        if (f.seq > m.seq) m.seq = f.seq;
        if (f.kind === "group") onGroup(m, f.body);
        if (!ackTimer) ackTimer = setTimeout(ack, ACK_DELAY_MS);
      } else if (f.re !== undefined && m.pending.has(f.re)) {
        const res = m.pending.get(f.re);
        m.pending.delete(f.re);
        res(f);
      } else if (f.op === "welcome") {
        resolve(m);
      } else if (f.op === "error") {
        m.errors++;
      }
    });
    ws.once("error", reject);
  });
}

/**
 * A runtime with a group of `members` users, all online (their objects and
 * tables created beforehand, as for users who have used the service), the
 * creation notice delivered and acked. `tag` keeps user ids apart.
 */
async function groupWithMembers(members, tag, storageDir) {
  const t = await startRust({ storageDir, bindings: { ARCHIVE_DELAY_MS: String(ARCHIVE_DELAY_MS), GROUP_ADDS_DEFAULT: "everyone" } });
  const uids = Array.from({ length: members }, (_, i) => `${tag}${i}`);
  // Per message number: receipts so far, first and last receipt times.
  const seen = new Map();
  const sentAt = new Map();
  const onGroup = (_m, body) => {
    if (body.n === undefined) return;
    const now = performance.now();
    let s = seen.get(body.n);
    if (!s) seen.set(body.n, (s = { count: 0, first: now, last: now }));
    s.count++;
    s.last = now;
  };
  // Users who have used the service: objects created before counting.
  for (let i = 0; i < uids.length; i += 25) await Promise.all(uids.slice(i, i + 25).map((u) => member(t, u, () => {}).then((m) => m.close())));
  const ms = [];
  for (let i = 0; i < uids.length; i += 25) ms.push(...(await Promise.all(uids.slice(i, i + 25).map((u) => member(t, u, onGroup)))));
  const made = await ms[0].request({ op: "group", call: "create", members: uids.slice(1) });
  if (made.status !== 201) throw new Error(`group not created: ${JSON.stringify(made)}`);
  const group = made.body.group;
  // The creation notice reaches everyone; acks settle.
  const until = performance.now() + 20_000;
  while (ms.some((m) => m.seq === 0) && performance.now() < until) await sleep(50);
  await sleep(500);
  const createdAt = performance.now();
  return { t, ms, group, seen, sentAt, createdAt };
}

/** Waits until every message in `sentAt` reached `of` members (or `timeoutMs`). */
async function settle(g, of, timeoutMs = 60_000) {
  const until = performance.now() + timeoutMs;
  const done = () => [...g.sentAt.keys()].every((n) => (g.seen.get(n)?.count ?? 0) >= of);
  while (!done() && performance.now() < until) await sleep(20);
  return done();
}

/** Latency figures of the messages sent, to their last (and first) member. */
function latencies(g, of) {
  const last = [];
  const first = [];
  let complete = 0;
  for (const [n, t0] of g.sentAt) {
    const s = g.seen.get(n);
    if (!s || s.count < of) continue;
    complete++;
    last.push(s.last - t0);
    first.push(s.first - t0);
  }
  return { complete, p50: pct(last, 50), p99: pct(last, 99), max: pct(last, 100), firstP50: pct(first, 50), firstP99: pct(first, 99) };
}

const send = (g, m, n) => {
  g.sentAt.set(n, performance.now());
  return m.request({ op: "group", call: "send", group: g.group, cmid: `c${n}`, body: { message: `group message number ${n} with a little text`, n } });
};

/** Counts per group message, and the fan-out's own figures. */
function perMessage(counts, messages, members) {
  const perMsg = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / messages]));
  return {
    perMsg,
    doRequests: (perMsg.do_fetches ?? 0) + (perMsg.do_alarms ?? 0),
    rows: (perMsg.sql_rows_written ?? 0) + (perMsg.alarms_set ?? 0),
    deliveriesPerMember: (perMsg.group_deliveries ?? 0) / members,
  };
}

/** Burst: `senders` members, `window` sends outstanding each, for `seconds`. */
export async function groupBurst({ members, senders = 4, window = 4, seconds = 8, storageDir }) {
  const g = await groupWithMembers(members, `b${members}x`, storageDir);
  try {
    const m0 = await g.t.metrics();
    const replies = [];
    let n = 0;
    let refused = 0;
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    const loop = async (m) => {
      while (performance.now() < deadline) {
        const i = n++;
        const start = performance.now();
        const r = await send(g, m, i);
        replies.push(performance.now() - start);
        if (r.status !== 200) {
          refused++;
          g.sentAt.delete(i);
        }
      }
    };
    await Promise.all(g.ms.slice(0, senders).flatMap((m) => Array.from({ length: window }, () => loop(m))));
    const answeredAt = performance.now();
    const complete = await settle(g, members);
    const lastReceipt = Math.max(...[...g.sentAt.keys()].map((k) => g.seen.get(k)?.last ?? 0));
    await sleep(ACK_DELAY_MS + 500); // the last acks and the group's answers
    const counts = diff(m0, await g.t.metrics());
    const messages = g.sentAt.size;
    return {
      members,
      senders,
      window,
      seconds,
      messages,
      refused,
      complete,
      sentPerSec: messages / ((answeredAt - t0) / 1000),
      fannedOutPerSec: messages / ((lastReceipt - t0) / 1000),
      fanOutSeconds: (lastReceipt - t0) / 1000,
      reply: { p50: pct(replies, 50), p99: pct(replies, 99) },
      latency: latencies(g, members),
      counts,
      ...perMessage(counts, messages, members),
    };
  } finally {
    await Promise.all(g.ms.map((m) => m.close()));
    await g.t.close();
  }
}

/**
 * Realistic: a message every `minMs`–`maxMs` from a random member, open
 * loop, for `seconds`; counted until every member's archive pass ran once.
 */
export async function groupSparse({ members = 100, seconds = 30, minMs = 100, maxMs = 300, storageDir } = {}) {
  const g = await groupWithMembers(members, `s${members}x`, storageDir);
  try {
    const m0 = await g.t.metrics();
    const replies = [];
    const pending = [];
    let refused = 0;
    const t0 = performance.now();
    for (let n = 0; performance.now() - t0 < seconds * 1000; n++) {
      const m = g.ms[Math.floor(Math.random() * g.ms.length)];
      const start = performance.now();
      pending.push(
        send(g, m, n).then((r) => {
          replies.push(performance.now() - start);
          if (r.status !== 200) {
            refused++;
            g.sentAt.delete(n);
          }
        }),
      );
      await sleep(minMs + Math.random() * (maxMs - minMs));
    }
    await Promise.all(pending);
    const complete = await settle(g, members);
    // Every member's archive pass (set by the creation notice) has run.
    const passesAt = g.createdAt + ARCHIVE_DELAY_MS + 3000;
    await sleep(Math.max(ACK_DELAY_MS + 500, passesAt - performance.now()));
    const windowSeconds = (performance.now() - t0) / 1000;
    const counts = diff(m0, await g.t.metrics());
    const messages = g.sentAt.size;
    return {
      members,
      seconds,
      minMs,
      maxMs,
      windowSeconds,
      messages,
      refused,
      complete,
      reply: { p50: pct(replies, 50), p99: pct(replies, 99) },
      latency: latencies(g, members),
      counts,
      ...perMessage(counts, messages, members),
    };
  } finally {
    await Promise.all(g.ms.map((m) => m.close()));
    await g.t.close();
  }
}

/**
 * Dollars per million group messages. Duration is modelled, not counted:
 * every delivery keeps its member's object active for one hop, and each
 * message keeps the sender's object and the group's object active for one
 * more each. A hop's time is the burst's wall time per delivery with the
 * same members (the local runtime runs every object on one thread, so that
 * is what a hop takes when the runtime is saturated: an upper bound).
 */
function cost(run, hopSeconds) {
  const active = ((run.perMsg.group_deliveries ?? 0) + 2) * hopSeconds;
  const c = costPerMillion(run.perMsg, active);
  return { ...c, hopSeconds, activeSecondsPerMsg: active, perMember: c.total / run.members };
}

/** Adds (or redoes) the cost of every run of a `groupCosts` result from its counts. */
export function withCosts(g) {
  for (const b of Object.values(g.burst)) {
    b.hopSeconds = b.fanOutSeconds / b.counts.group_deliveries;
    b.cost = cost(b, b.hopSeconds);
  }
  if (g.sparse) {
    // The hop time of the burst with as many members (or the largest).
    const like = g.burst[g.sparse.members] ?? Object.values(g.burst).at(-1);
    g.sparse.cost = cost(g.sparse, like.hopSeconds);
  }
  g.prices = PRICES;
  return g;
}

export async function groupCosts({ memberCounts = MEMBER_COUNTS, burst = {}, sparse = {}, storageDir, log = () => {} } = {}) {
  const out = { ackDelayMs: ACK_DELAY_MS, archiveDelayMs: ARCHIVE_DELAY_MS, storage: storageDir ? "tmpfs" : "disk", burst: {}, prices: PRICES };
  for (const members of memberCounts) {
    const b = await groupBurst({ members, storageDir, ...burst });
    out.burst[members] = b;
    withCosts(out);
    log(`groups burst ${members} members: ${b.sentPerSec.toFixed(0)} sent/s, ${b.fannedOutPerSec.toFixed(0)} fanned out/s, to last member p50 ${b.latency.p50.toFixed(1)} ms p99 ${b.latency.p99.toFixed(1)} ms, per message ${b.doRequests.toFixed(2)} DO requests ${b.rows.toFixed(2)} rows, $${b.cost.total.toFixed(2)}/M`);
  }
  const s = await groupSparse({ storageDir, ...sparse });
  out.sparse = s;
  withCosts(out);
  log(`groups realistic ${s.members} members: ${s.messages} messages, to last member p50 ${s.latency.p50.toFixed(1)} ms p99 ${s.latency.p99.toFixed(1)} ms, per message ${s.doRequests.toFixed(2)} DO requests ${s.rows.toFixed(2)} rows, $${s.cost.total.toFixed(2)}/M`);
  return out;
}

/** The Groups section's tables, for docs/benchmarks.md. */
export function groupTables(g) {
  const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(d));
  const usd = (x) => `$${x.toFixed(x < 0.1 ? 4 : 2)}`;
  const runs = [...Object.values(g.burst).map((b) => [`burst, ${b.members} members`, b]), [`realistic, ${g.sparse.members} members`, g.sparse]];
  const speed = Object.values(g.burst).map(
    (b) =>
      `| ${b.members} | ${b.messages}${b.complete ? "" : " (incomplete)"}${b.refused ? `, ${b.refused} refused` : ""} | ${f(b.sentPerSec, 0)} | ${f(b.fannedOutPerSec, 0)} | ${f(b.fannedOutPerSec * b.members, 0)} | ${f(b.reply.p50, 1)} / ${f(b.reply.p99, 1)} | ${f(b.latency.firstP50, 1)} / ${f(b.latency.firstP99, 1)} | ${f(b.latency.p50, 1)} / ${f(b.latency.p99, 1)} |`,
  );
  const s = g.sparse;
  const count = (k) => `| ${k} | ${runs.map(([, r]) => f(r.perMsg[k] ?? 0)).join(" | ")} | ${runs.map(([, r]) => f((r.perMsg[k] ?? 0) / r.members, 3)).join(" | ")} |`;
  const keys = ["do_fetches", "do_alarms", "do_ws_messages", "sql_rows_written", "alarms_set", "sql_rows_read", "d1_queries", "d1_rows_written", "messages_stored", "group_deliveries", "frames_out", "worker_requests"];
  const items = Object.keys(s.cost.items);
  return [
    "| members | messages | sent/s (answered) | fanned out/s (every member has it) | deliveries/s (member × message) | send answered p50 / p99 ms | to the first member p50 / p99 ms | to the LAST member p50 / p99 ms |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...speed,
    `| ${s.members}, realistic | ${s.messages}${s.complete ? "" : " (incomplete)"}${s.refused ? `, ${s.refused} refused` : ""} | ${f(s.messages / s.seconds, 1)} offered | – | – | ${f(s.reply.p50, 1)} / ${f(s.reply.p99, 1)} | ${f(s.latency.firstP50, 1)} / ${f(s.latency.firstP99, 1)} | ${f(s.latency.p50, 1)} / ${f(s.latency.p99, 1)} |`,
    "",
    `| per group message | ${runs.map(([k]) => k).join(" | ")} | ${runs.map(([k]) => `per member: ${k}`).join(" | ")} |`,
    `|---|${runs.map(() => "---:").join("|")}|${runs.map(() => "---:").join("|")}|`,
    `| **DO requests** (fetches + alarm runs) | ${runs.map(([, r]) => `**${f(r.doRequests)}**`).join(" | ")} | ${runs.map(([, r]) => f(r.doRequests / r.members, 3)).join(" | ")} |`,
    `| **DO rows written** (SQLite rows + alarms set) | ${runs.map(([, r]) => `**${f(r.rows)}**`).join(" | ")} | ${runs.map(([, r]) => f(r.rows / r.members, 3)).join(" | ")} |`,
    ...keys.map(count),
    "",
    `| $ per million group messages | ${runs.map(([k]) => k).join(" | ")} |`,
    `|---|${runs.map(() => "---:").join("|")}|`,
    ...items.map((k) => `| ${k} | ${runs.map(([, r]) => usd(r.cost.items[k])).join(" | ")} |`),
    `| **total** | ${runs.map(([, r]) => `**${usd(r.cost.total)}**`).join(" | ")} |`,
    `| **per member** (total / members) | ${runs.map(([, r]) => `**${usd(r.cost.perMember)}**`).join(" | ")} |`,
  ].join("\n");
}

/** The Groups section of docs/benchmarks.md: how the figures were made, the tables, what they say. */
export function groupsSection(g) {
  const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(d));
  const usd = (x) => `$${x.toFixed(x < 0.1 ? 4 : 2)}`;
  const bursts = Object.values(g.burst);
  const big = bursts.at(-1);
  const s = g.sparse;
  const b0 = bursts[0];
  const perMember = (r) => (r.perMsg.group_deliveries ?? 0) / r.members;
  return `\`bench/groups.mjs\` (run by the benchmark; \`node bench/groups.mjs\` alone, \`--out=FILE\` keeps its results). These figures: \`${g.cmd.trim()}\`${g.when ? ` on ${g.when}` : ""}, SQLite on ${g.storage ?? "disk"}.

One group, every member online with one v1 socket, acking like the shipped client (one \`ack\` of the highest seq ${g.ackDelayMs} ms after the first unacked frame; \`ackDelayMs\` in \`client/src/client.ts\`). The users have used the service before (their objects and tables exist), and the group's creation notice has reached everyone before counting. Archive delay as in production (${g.archiveDelayMs / 1000} s).

- *Burst* (${bursts.map((b) => b.members).join(", ")} members): ${b0.senders} members send group messages over their sockets (\`{"op":"group","call":"send",…}\`), each keeping ${b0.window} sends outstanding and sending the next as soon as one is answered, for ${b0.seconds} s: a closed loop, as fast as the server answers. *Fanned out/s* is messages over the time from the first send to the last member's receipt of the last message; *to the last member* is, per message, from the send frame leaving the bench process to the last member's socket receiving it (timestamps in the bench process, which also runs the ${big.members} sockets). No member's archive pass falls in a burst's window (it runs ${g.archiveDelayMs / 1000} s after the notice).
- *Realistic* (${s.members} members): a message every ${s.minMs}–${s.maxMs} ms (open loop: the next is sent whatever the answers) from a random member for ${s.seconds} s, counted until every member's archive pass has run once (${f(s.windowSeconds, 0)} s), as in the steady state: one pass per member per archive delay.

${groupTables(g)}

What the counts say:

- **The fan-out is bounded by member × message work.** Deliveries (a member getting a message) run at about ${bursts.map((b) => f(b.fannedOutPerSec * b.members, 0)).join(", ")} per second with ${bursts.map((b) => b.members).join(", ")} members, so a group's messages per second fall as 1/members: ${bursts.map((b) => `${f(b.fannedOutPerSec, 0)} msg/s with ${b.members}`).join(", ")}. Locally every object runs in one workerd process on a 2-core machine shared with the bench client, so this is the local runtime's throughput, not one group object's: on the platform the members' objects run in parallel. What is left to the group's object there is one subrequest per hop; its answers move cursors in memory.
- **Rows written per member per message: about 1, the member's copy.** Each member's log keeps its copy (one row). The cursors are not written per delivery: the member's cursor of the group is stored when its archive cursor passes the group's entries (one row per group per pass, every 30 s), and the group's cursor of each member when the group's alarm fires (one row per member whose cursor moved). A delivery carries everything owed, so the hops batch under load: ${bursts.map((b) => f(perMember(b))).join(", ")} hops per member per message in the bursts, ${f(perMember(s))} in the realistic run (${f(s.rows / s.members)} rows per member per message there against ${f(big.rows / big.members)} in the burst). The group's own rows (the entry, its \`cmid\`) are 2 per message whatever the members. Acks write nothing (a device's ack is kept in memory and saved with the archive pass or the socket's close; at once only while a push may be due, and push is not configured here).
- **DO requests per member per message = the hops** (${f(s.doRequests / s.members)} realistic, ${f(big.doRequests / big.members)} burst), plus the acks as WebSocket messages (about one per hop, billed 20:1). Archive passes: ${f(s.perMsg.do_alarms ?? 0)} alarm runs and ${f(s.perMsg.alarms_set ?? 0)} alarms set per message in the realistic run (one pass per member per ${g.archiveDelayMs / 1000} s, shared by the ${f((s.messages / s.windowSeconds) * (g.archiveDelayMs / 1000), 0)} messages sent meanwhile).
- **No D1**: ${f(s.perMsg.d1_queries ?? 0)} D1 statements and ${f(s.perMsg.d1_rows_written ?? 0)} D1 rows per group message. Group history stays in the group object's SQLite; members' archive passes skip group entries.
- **Cost per member is about flat**, so a group message costs about members × ${usd(big.cost.perMember)} per million when sends batch and ${usd(s.cost.perMember)} per million when they do not (realistic): ${bursts.map((b) => `${usd(b.cost.total)} with ${b.members}`).join(", ")} members per million messages in the bursts, ${usd(s.cost.total)} with ${s.members} in the realistic run, nearly all of it rows written. Duration is modelled, not counted: each delivery keeps its member's object active for one hop and each message the sender's and the group's object for one more; a hop's time is the burst's wall time per delivery (${bursts.map((b) => `${f(b.hopSeconds * 1000, 2)} ms`).join(", ")}), an upper bound since the runtime was saturated.`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v = "true"] = a.replace(/^--/, "").split("="); return [k, v]; }));
  let g;
  if (args.render) {
    g = withCosts(JSON.parse(readFileSync(args.render, "utf8")));
  } else {
    const members = args.members ? args.members.split(",").map(Number) : MEMBER_COUNTS;
    const burst = Object.fromEntries(["senders", "window", "seconds"].filter((k) => args[k]).map((k) => [k, Number(args[k])]));
    const sparse = args.sparse ? { seconds: Number(args.sparse) } : {};
    g = await groupCosts({ memberCounts: members, burst, sparse, storageDir: args.tmpfs ? "/dev/shm" : undefined, log: console.log });
    const shown = process.argv.slice(2).filter((a) => !a.startsWith("--out") && !a.startsWith("--section"));
    g.cmd = `node bench/groups.mjs${shown.length ? " " + shown.join(" ") : ""}`;
    g.when = new Date().toISOString();
    if (args.out) writeFileSync(args.out, JSON.stringify(g, null, 2));
  }
  console.log(args.section ? groupsSection(g) : groupTables(g));
}
