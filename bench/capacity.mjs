// The capacity model: what a deployment needs at a given scale, from the
// per-message counts the benchmark measured (sparse traffic, the realistic
// case), the configured shard count and batch settings, and the platform's
// published limits. `npm run bench` runs it into docs/benchmarks.md; on its
// own, from the last results:
//   node bench/capacity.mjs [--users=10000000] [--rate=100000]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { costPerMillion } from "./prices.mjs";

/** Platform limits the model checks against, each with the page that states it. */
export const LIMITS = {
  d1QueriesPerSec: { value: 1000, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "one database is single-threaded: about 1,000 queries/s at 1 ms each, fewer for writes" },
  d1DatabaseBytes: { value: 10e9, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "10 GB per database, not raisable" },
  d1AccountBytes: { value: 1e12, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "1 TB per account by default" },
  doRequestsPerSec: { value: 1000, page: "https://developers.cloudflare.com/durable-objects/platform/limits/", note: "soft limit of about 1,000 requests/s per object" },
};

/** The targets of issue 11 for the model (per database, per object). */
export const TARGETS = { statementsPerSecPerDb: 200, bytesPerDayPerDb: 5e9 };

/** D1 databases bound in wrangler.toml (`[[d1_databases]]` tables). */
export function configuredShards(root) {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  return (toml.match(/^\[\[d1_databases\]\]/gm) ?? []).length;
}

/** History writer settings (wrangler.toml defaults; `src/history.rs` BATCH_ROWS). */
export const WRITER = { flushSeconds: 2, batchRows: 500 };
/** Inbox shards (`wrangler.toml`): shards per hot user and the least time between a shard's batches. */
export const INBOX = { shards: 16, flushMs: 40 };

/**
 * The model. `perMsg`: measured counts per message (sparse traffic);
 * `d1BytesPerMsg`: D1 storage per message; `activeSecondsPerMsg`: modelled
 * DO duration. D1 statements come from the writers' design, not from the
 * small run's count: a writer flushes every `flushSeconds`, or whenever
 * `batchRows` rows wait, so a database sees max(1 / flushSeconds, rows/s ÷
 * batchRows) statements per second whatever the number of users.
 */
export function capacity({ users = 10e6, rate = 100e3, shards, perMsg, d1BytesPerMsg, activeSecondsPerMsg, hotRate = 5000, writer = WRITER, inbox = INBOX }) {
  const day = 86400;
  const hotAtUser = Math.min(hotRate, (inbox.shards * 1000) / inbox.flushMs);
  const rowsPerSec = rate * perMsg.d1_rows_written;
  const statementsPerDb = (n) => Math.max(1 / writer.flushSeconds, rowsPerSec / n / writer.batchRows);
  const bytesPerDay = rate * day * d1BytesPerMsg;
  const shardsNeeded = Math.max(
    Math.ceil(bytesPerDay / TARGETS.bytesPerDayPerDb),
    Math.ceil(rowsPerSec / writer.batchRows / TARGETS.statementsPerSecPerDb),
  );
  const at = (n) => ({
    statementsPerDb: statementsPerDb(n),
    bytesPerDayPerDb: bytesPerDay / n,
    handoffsPerWriter: (rate * (perMsg.handoffs ?? 0)) / n,
  });
  const now = at(shards);
  const needed = at(shardsNeeded);
  // Each chat wakes the sender's object (a socket message) and the
  // recipient's (a hop); spread over every user.
  const requestsPerUserObject = (rate * (perMsg.do_fetches + perMsg.do_ws_messages)) / users;
  const cost = costPerMillion(perMsg, activeSecondsPerMsg);
  const monthly = (cost.total * rate * 30 * day) / 1e6;
  const limit = LIMITS.doRequestsPerSec.value;
  const rows = [
    ["D1 rows written/s, all databases", rowsPerSec, null],
    [`D1 statements/s per database, ${shards} configured`, now.statementsPerDb, now.statementsPerDb <= TARGETS.statementsPerSecPerDb],
    [`D1 GB per day per database, ${shards} configured`, now.bytesPerDayPerDb / 1e9, now.bytesPerDayPerDb <= TARGETS.bytesPerDayPerDb],
    ["D1 databases (shards) needed for the targets", shardsNeeded, shardsNeeded <= shards],
    [`D1 statements/s per database, ${shardsNeeded} shards`, needed.statementsPerDb, needed.statementsPerDb <= TARGETS.statementsPerSecPerDb],
    [`D1 GB per day per database, ${shardsNeeded} shards`, needed.bytesPerDayPerDb / 1e9, needed.bytesPerDayPerDb <= TARGETS.bytesPerDayPerDb],
    ["D1 GB per day, all databases", bytesPerDay / 1e9, null],
    ["days until one database is full (10 GB)", LIMITS.d1DatabaseBytes.value / needed.bytesPerDayPerDb, null],
    ["days until the account is full (1 TB)", LIMITS.d1AccountBytes.value / bytesPerDay, null],
    [`hand-offs/s per history writer object, ${shardsNeeded} shards`, needed.handoffsPerWriter, needed.handoffsPerWriter <= limit],
    ["requests/s per user object (average)", requestsPerUserObject, requestsPerUserObject <= limit],
    // Through inbox shards: at most one batch per shard per flush interval,
    // and never more requests than messages.
    [`requests/s to a hot recipient's object (${hotRate} msg/s to one user, ${inbox.shards} inbox shards)`, hotAtUser, hotAtUser <= limit],
    [`requests/s per inbox shard of that user`, hotRate / inbox.shards, hotRate / inbox.shards <= limit],
    ["monthly bill at list prices (USD)", monthly, null],
  ];
  return { users, rate, shards, perMsg, d1BytesPerMsg, costPerMillion: cost.total, monthly, shardsNeeded, rows, writer };
}

/** The model as a Markdown table. */
export function capacityTable(m) {
  const n = (x) => (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(x >= 1 ? 1 : 3));
  return [
    `${n(m.users)} users, ${n(m.rate)} messages/s sustained, ${m.shards} D1 database(s) configured; measured in the sparse run: ${m.perMsg.d1_rows_written.toFixed(2)} D1 rows written, ${n(m.d1BytesPerMsg)} D1 bytes and ${(m.perMsg.handoffs ?? 0).toFixed(3)} writer hand-offs per message; writers flush every ${m.writer.flushSeconds} s or ${m.writer.batchRows} rows; $${m.costPerMillion.toFixed(2)} per million messages.`,
    "",
    "| quantity | value | within the target or limit |",
    "|---|---:|---|",
    ...m.rows.map(([k, v, ok]) => `| ${k} | ${n(v)} | ${ok === null ? "" : ok ? "yes" : "**no**"} |`),
    "",
    `Limits used: ${Object.values(LIMITS).map((l) => `[${l.note}](${l.page})`).join("; ")}. Targets: at most ${TARGETS.statementsPerSecPerDb} statements/s and ${TARGETS.bytesPerDayPerDb / 1e9} GB per day per database.`,
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(fileURLToPath(import.meta.url), "..", "..");
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
  const r = JSON.parse(readFileSync(join(root, "bench", "results", "latest.json"), "utf8"));
  const m = capacity({
    users: Number(args.users ?? 10e6),
    rate: Number(args.rate ?? 100e3),
    shards: configuredShards(root),
    perMsg: r.sparse.online.perMsg,
    d1BytesPerMsg: r.sparse.d1.bytesPerMessage,
    // As bench/run.mjs: a delivery each for two objects, plus the archive
    // passes' wait for the writer.
    activeSecondsPerMsg: (2 * r.pair.disk.rust.p50) / 1000 + ((r.sparse.online.perMsg.do_alarms ?? 0) * WRITER.flushSeconds) / 2,
  });
  console.log(capacityTable(m));
}
