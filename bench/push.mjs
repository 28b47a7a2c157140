// What the push webhook costs, in rows written (DO SQLite rows plus alarms
// set, both billed as rows written) per message, with push off and on, for
// recipients in three states: offline (every message is pushed), online on a
// v1 device that acks each message (nothing is pushed; an ack is saved at
// once while a push may be due), and online on a legacy socket (nothing is
// pushed). Messages come now and then (sparse), so no push coalesces two.
// The webhook is a local HTTP receiver answering 204. `npm run bench` runs
// it; `node bench/push.mjs [--users=40] [--each=5]` runs it alone.
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { connectV1, freePort, sleep } from "../tests/harness.mjs";
import { startRust } from "./runtime.mjs";

export const STATES = ["offline", "v1", "legacy"];

export async function pushCosts({ users: count = 40, each = 5 } = {}) {
  const port = await freePort();
  let calls = 0;
  const server = createServer((req, res) => req.resume().on("end", () => (calls++, res.writeHead(204).end())));
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  const run = async (state, push) => {
    // The archive delay and the push delay are equal, as in wrangler.toml
    // (30 s each), scaled down: a push that falls due rides on the archive
    // pass's alarm.
    // A short presence grace: the warm-up sessions go offline (a row and an
    // alarm each) before the measured window, not inside it.
    const bindings = { ARCHIVE_DELAY_MS: "1000", PUSH_DELAY_S: "1", PRESENCE_GRACE_S: "1" };
    if (push) Object.assign(bindings, { PUSH_WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, PUSH_WEBHOOK_SECRET: "s" });
    const t = await startRust({ bindings });
    try {
      const users = Array.from({ length: count }, (_, i) => `u${i}`);
      // Users who have used the service before (their objects and tables exist).
      await Promise.all(users.map(async (u) => (await connectV1(t.worker, u)).close()));
      await Promise.all(users.map((u) => t.api("/api/usr-msg", { fromUser: `s${u}`, toUser: u, message: "warm" })));
      await sleep(3000);
      const devices = state === "v1" ? await Promise.all(users.map((u) => connectV1(t.worker, u))) : [];
      const legacy = state === "legacy" ? await Promise.all(users.map((u) => t.worker.connect(u))) : [];
      for (const d of devices) {
        d.raw.ws.on("message", (data) => {
          const f = JSON.parse(data.toString());
          if (f.op === "msg") d.send({ op: "ack", up_to: f.seq });
        });
      }
      const calls0 = calls;
      const m0 = await t.metrics();
      for (let k = 0; k < each; k++) {
        await Promise.all(users.map((u) => t.api("/api/usr-msg", { fromUser: `s${u}`, toUser: u, message: `m${k}` })));
        await sleep(1500); // longer than the push delay: no two messages share a push
      }
      await sleep(4500); // the last pushes, archive passes and writer flushes
      const m1 = await t.metrics();
      await Promise.all([...devices.map((d) => d.close()), ...legacy.map((l) => l.close())]);
      const n = count * each;
      const d = (k) => ((m1[k] ?? 0) - (m0[k] ?? 0)) / n;
      return { rows: d("sql_rows_written") + d("alarms_set"), alarms: d("alarms_set"), calls: (calls - calls0) / n, messages: n };
    } finally {
      await t.close();
    }
  };
  const out = { users: count, each };
  try {
    for (const state of STATES) out[state] = { off: await run(state, false), on: await run(state, true) };
  } finally {
    server.close();
  }
  return out;
}

/** The table of a `pushCosts` result, for docs/benchmarks.md. */
export function pushTable(r) {
  const f = (x) => x.toFixed(2);
  const rows = STATES.map((s) => {
    const { off, on } = r[s];
    return `| ${s} | ${f(off.rows)} | ${f(on.rows)} | ${f(on.rows - off.rows)} | ${f(on.alarms - off.alarms)} | ${f(on.calls)} |`;
  });
  return [
    "| recipient | rows written per message, push off | push on | difference | of which alarms set | webhook calls per message |",
    "|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
  const r = await pushCosts({ users: Number(args.users ?? 40), each: Number(args.each ?? 5) });
  console.log(JSON.stringify(r));
  console.log(pushTable(r));
}
