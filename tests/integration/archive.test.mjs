// History at scale: one D1 row per message, spread over the history shards
// by conversation, written by the shards' writer objects; a writer evicted
// with a batch in memory and D1 going away lose nothing; retention drops
// whole partitions.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEY, eventually, sleep, startWorker, token } from "../harness.mjs";

async function chat(a, from, to, message) {
  a.send({ fromUser: from, toUser: to, message });
  assert.equal(await a.next(), "ok");
}

async function metrics(w) {
  return (await w.fetch("/api/metrics", { headers: { authorization: `Bearer ${API_KEY}` } })).json();
}

describe("history by conversation over shards", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("a chat is one row with both sides' seqs; conversations spread over both shards", async () => {
    const pairs = Array.from({ length: 12 }, (_, i) => [`s${i}a`, `s${i}b`]);
    const sockets = await Promise.all(pairs.flat().map((u) => w.connect(u)));
    for (let i = 0; i < pairs.length; i++) {
      const [a, b] = [sockets[2 * i], sockets[2 * i + 1]];
      await chat(a, pairs[i][0], pairs[i][1], `to b ${i}`);
      await b.nextJson();
      await chat(b, pairs[i][1], pairs[i][0], `to a ${i}`);
      await a.nextJson();
    }
    const senders = new Set(pairs.flat());
    await eventually(async () => (await w.historyRows()).filter((r) => senders.has(r.sender)).length === 24, 10000);
    const rows = (await w.historyRows()).filter((r) => senders.has(r.sender));
    for (const r of rows) {
      assert.ok(r.sseq >= 1 && r.rseq >= 1, `both seqs on ${r.id}`);
      assert.equal(r.is_send, 1);
    }
    assert.equal(new Set(rows.map((r) => r.id)).size, 24, "one row per message");
    const [db0, db1] = await w.shards();
    const perShard = [];
    for (const db of [db0, db1]) {
      const { results } = await db.prepare("SELECT tbl FROM partitions").all();
      let n = 0;
      for (const { tbl } of results) n += (await db.prepare(`SELECT COUNT(*) AS n FROM ${tbl} WHERE sender LIKE 's%'`).first()).n;
      perShard.push(n);
    }
    assert.ok(perShard.every((n) => n > 0), `both shards hold conversations: ${perShard}`);
    // Each side pages its own seqs.
    const page = await (await w.history("s0b")).json();
    assert.deepEqual(page.usr.map((m) => m.message), ["to a 0", "to b 0"]);
    await Promise.all(sockets.map((s) => s.close()));
  });

  test("the newest pages come from the user's own log, without D1", async () => {
    // Senders archive after a minute here: nothing is in D1 yet.
    const slow = await startWorker({ bindings: { ARCHIVE_DELAY_MS: "60000" } });
    try {
      const a = await slow.connect("r1");
      const b = await slow.connect("r2");
      await chat(a, "r1", "r2", "fresh");
      await b.nextJson();
      const before = await metrics(slow);
      const page = await (await slow.history("r2")).json();
      assert.deepEqual(page.usr.map((m) => [m.message, m.isSend]), [["fresh", 1]]);
      const sent = await (await slow.history("r1")).json();
      assert.deepEqual(sent.usr.map((m) => [m.message, m.isSend]), [["fresh", 1]]);
      const v1 = await (await slow.fetch("/v1/history", { headers: { authorization: `Bearer ${token("r2")}` } })).json();
      assert.deepEqual(v1.items.map((m) => m.kind), ["in"]);
      assert.equal((await metrics(slow)).d1_queries, before.d1_queries, "no D1 statement for the newest pages");
      assert.equal((await slow.historyRows()).length, 0);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await slow.close();
    }
  });

  test("pages below a pruned log come from D1, seamlessly", async () => {
    // Logs keep 4 entries, so most of these pages are D1's.
    const w2 = await startWorker({ bindings: { LOG_CAP: "4" } });
    try {
      const a = await w2.connect("q1");
      const b = await w2.connect("q2");
      for (let i = 0; i < 12; i++) {
        await chat(a, "q1", "q2", `m${i}`);
        await b.nextJson();
      }
      await eventually(async () => (await w2.historyRows()).length === 12, 10000);
      await sleep(300); // the passes that pruned the logs have ended
      const read0 = await metrics(w2);
      const first = await (await w2.history("q2", { limit: "3" })).json();
      assert.deepEqual(first.usr.map((m) => m.message), ["m11", "m10", "m9"]);
      const all = await (await w2.history("q2", { limit: "50" })).json();
      assert.deepEqual(all.usr.map((m) => m.message), Array.from({ length: 12 }, (_, i) => `m${11 - i}`));
      assert.ok((await metrics(w2)).d1_queries > read0.d1_queries, "the whole page needed D1");
      const older = await (await w2.history("q2", { limit: "3", before: String(first.next) })).json();
      assert.deepEqual(older.usr.map((m) => m.message), ["m8", "m7", "m6"]);
      const sent = await (await w2.fetch("/v1/history?limit=50", { headers: { authorization: `Bearer ${token("q1")}` } })).json();
      assert.deepEqual(sent.items.map((m) => m.seq), Array.from({ length: 12 }, (_, i) => 12 - i), "the sender's own seqs");
      await Promise.all([a.close(), b.close()]);
    } finally {
      await w2.close();
    }
  });

  test("D1 statements per message stay far below one when many users send", async () => {
    const before = await metrics(w);
    const n = 20;
    const users = Array.from({ length: n }, (_, i) => [`m${i}a`, `m${i}b`]);
    const sockets = await Promise.all(users.flat().map((u) => w.connect(u)));
    await Promise.all(users.map(([from, to], i) => chat(sockets[2 * i], from, to, "hello")));
    await eventually(async () => (await w.historyRows("sender LIKE 'm%'")).length === n, 10000);
    const after = await metrics(w);
    const statements = after.d1_queries - before.d1_queries;
    const handoffs = after.handoffs - before.handoffs;
    // 20 users' passes (one hand-off each, or two when shards differ) meet
    // in the writers: a few flushes, not one statement per user.
    assert.ok(handoffs >= n, `every sender handed its chat in (${handoffs})`);
    assert.ok(statements < n / 2, `${statements} D1 statements for ${n} messages`);
    assert.equal(after.d1_rows_written - before.d1_rows_written, n, "one D1 row written per message");
    await Promise.all(sockets.map((s) => s.close()));
  });
});

describe("writers and D1 failing", () => {
  test("a writer evicted with a batch in memory loses nothing: its users hand the rows in again", async () => {
    // Writers hold a batch for 4 s; the runtime restarts while they do.
    const w = await startWorker({ bindings: { HISTORY_FLUSH_MS: "4000" } });
    try {
      const a = await w.connect("e1");
      const b = await w.connect("e2");
      for (let i = 0; i < 5; i++) await chat(a, "e1", "e2", `held ${i}`);
      // The archive pass (50 ms) has handed the rows in; the writer holds them.
      await eventually(async () => (await metrics(w)).handoffs >= 1, 5000);
      await sleep(200);
      assert.equal((await w.historyRows()).length, 0, "nothing written yet: the batch is in the writer's memory");
      await Promise.all([a.close(), b.close()]);
      await w.restart();
      // After the restart the senders' alarms run their passes again.
      await eventually(async () => (await w.historyRows()).length === 5, 20000);
      const page = await (await w.history("e2")).json();
      assert.deepEqual(page.usr.map((m) => m.message), [4, 3, 2, 1, 0].map((i) => `held ${i}`));
    } finally {
      await w.close();
    }
  });

  test("a D1 outage: sends go on, reads answer 503, and history is whole once D1 is back", async () => {
    const w = await startWorker();
    try {
      const a = await w.connect("o1");
      const b = await connectLater(w, "o2");
      await chat(a, "o1", "o2", "before");
      await eventually(async () => (await w.historyRows()).length === 1, 5000);
      await w.d1Outage();
      for (let i = 0; i < 4; i++) await chat(a, "o1", "o2", `during ${i}`);
      await sleep(300);
      // o1's sent chats were queued at o2: whether they arrived since is
      // D1's to tell, and D1 is down.
      assert.equal((await w.history("o1")).status, 503);
      // o2's own log holds its newest page: no D1 needed.
      assert.equal((await (await w.history("o2")).json()).usr.length, 5);
      assert.match(w.output, /"event":"history_write_failed"/);
      await w.d1Restore();
      await eventually(async () => (await w.historyRows()).length === 5, 15000);
      const page = await (await w.history("o1")).json();
      assert.deepEqual(page.usr.map((m) => [m.message, m.isSend]), [
        ["during 3", 2],
        ["during 2", 2],
        ["during 1", 2],
        ["during 0", 2],
        ["before", 2],
      ]);
      // The recipient connects: its queue is delivered, and history learns it.
      const c = await b();
      for (const m of ["before", "during 0", "during 1", "during 2", "during 3"]) assert.equal((await c.nextJson()).message, m);
      await eventually(async () => (await (await w.history("o1")).json()).usr.every((m) => m.isSend === 1), 10000);
      await Promise.all([a.close(), c.close()]);
    } finally {
      await w.close();
    }
  });
});

/** A user who connects later: returns the function that connects them. */
async function connectLater(w, uid) {
  return () => w.connect(uid);
}

describe("retention", () => {
  test("a partition wholly past HISTORY_RETENTION_DAYS is dropped as a table, never row by row", async () => {
    const w = await startWorker({ bindings: { HISTORY_PARTITION_DAYS: "1", HISTORY_RETENTION_DAYS: "2" } });
    try {
      const today = Math.floor(Date.now() / 86400000);
      const old = today - 5;
      const db = await w.db();
      await db.prepare(`CREATE TABLE history_${old} (conv TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (conv, id)) WITHOUT ROWID`).run();
      for (let k = 0; k < 4; k++) {
        const oldRows = Array.from({ length: 500 }, (_, i) => `('u:x|y', 'old${k}-${i}')`).join(", ");
        await db.prepare(`INSERT INTO history_${old} VALUES ${oldRows}`).run();
      }
      await db.prepare("INSERT INTO partitions (tbl, first_day, end_day) VALUES (?1, ?2, ?3)").bind(`history_${old}`, old, old + 1).run();
      const kept = today - 1;
      await db.prepare(`CREATE TABLE history_${kept} (conv TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (conv, id)) WITHOUT ROWID`).run();
      await db.prepare("INSERT INTO partitions (tbl, first_day, end_day) VALUES (?1, ?2, ?3)").bind(`history_${kept}`, kept, kept + 1).run();
      const before = await metrics(w);
      // Messages to users of both shards make both writers open today's partition.
      const a = await w.connect("t0");
      for (let i = 1; i <= 8; i++) await chat(a, "t0", `t${i}`, "now");
      await eventually(async () => (await metrics(w)).partitions_dropped - before.partitions_dropped === 1, 10000);
      const after = await metrics(w);
      const tables = (await db.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'history%'").all()).results.map((r) => r.name);
      assert.ok(!tables.includes(`history_${old}`), "the old partition's table is gone");
      assert.ok(tables.includes(`history_${kept}`), "a partition within retention stays");
      const listed = (await db.prepare("SELECT tbl FROM partitions").all()).results.map((r) => r.tbl);
      assert.ok(!listed.includes(`history_${old}`) && listed.includes(`history_${kept}`));
      // Dropping a table of 2,000 rows is not 2,000 rows written: what is
      // counted is today's 8 rows, per shard its new table and listing row,
      // the old listing row, and the table's pages as D1 counts them.
      const written = after.d1_rows_written - before.d1_rows_written;
      assert.ok(written < 8 + 50, `${written} rows written`);
      await a.close();
    } finally {
      await w.close();
    }
  });
});

describe("upgrading a deployment", () => {
  test("history written in the per-owner layout before 0002 is copied by the job and paged as before", async () => {
    const w = await startWorker();
    try {
      const a = await w.connect("ua");
      const b = await w.connect("ub");
      await chat(a, "ua", "ub", "old one");
      await b.nextJson();
      await w.api("/api/sys-msg", { uid: "ub", type: "like" });
      await b.nextJson();
      await chat(b, "ub", "ua", "old two");
      await a.nextJson();
      await eventually(async () => (await w.historyRows()).length === 3, 10000);
      const pages = async () => [await (await w.history("ua")).json(), await (await w.history("ub")).json(), await (await w.history("ub", { peer: "ua" })).json()];
      const expected = await pages();
      // Turn those rows back into what a deployment before 0002 held: two
      // per-owner rows per chat in 0001's `messages`, nothing by conversation.
      const db = await w.db();
      for (const r of await w.historyRows()) {
        const insert = (owner, seq, kind, peer, peerSeq) =>
          db
            .prepare("INSERT INTO messages (owner, seq, id, conv, peer, kind, time, body, is_send, peer_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
            .bind(owner, seq, r.id, r.conv, peer, kind, r.time, r.body, r.is_send, peerSeq)
            .run();
        if (r.kind === 3) await insert(r.recipient, r.rseq, 3, null, null);
        else {
          await insert(r.sender, r.sseq, 2, r.recipient, r.rseq);
          await insert(r.recipient, r.rseq, 1, r.sender, null);
        }
      }
      for (const shard of await w.shards()) {
        for (const { tbl } of (await shard.prepare("SELECT tbl FROM partitions").all()).results) await shard.prepare(`DELETE FROM ${tbl}`).run();
      }
      assert.equal((await w.historyRows()).length, 0, "before the copy, nothing is in today's layout");
      // The job, two rows at a time, to the end.
      let next = { owner: "", seq: 0 };
      let copied = 0;
      let calls = 0;
      while (next) {
        const q = new URLSearchParams({ owner: next.owner, seq: String(next.seq), limit: "2" });
        const r = await w.fetch(`/api/history/upgrade?${q}`, { method: "POST", headers: { authorization: `Bearer ${API_KEY}` } });
        assert.equal(r.status, 200);
        const out = await r.json();
        copied += out.copied;
        next = out.next;
        calls++;
      }
      assert.equal(copied, 5);
      assert.equal(calls, 3);
      assert.equal((await w.historyRows()).length, 3, "one row per message again");
      assert.deepEqual(await pages(), expected, "every page as it was");
      // New messages go on after the copied ones.
      await chat(a, "ua", "ub", "new");
      await b.nextJson();
      const after = await (await w.history("ub")).json();
      assert.deepEqual(after.usr.map((m) => m.message), ["new", "old two", "old one"]);
      // Run again: nothing new is written.
      const before = await metrics(w);
      const again = await w.fetch("/api/history/upgrade", { method: "POST", headers: { authorization: `Bearer ${API_KEY}` } });
      assert.equal((await again.json()).copied, 5);
      assert.equal((await metrics(w)).d1_rows_written, before.d1_rows_written, "a repeated copy writes nothing");
      const refused = await w.fetch("/api/history/upgrade", { method: "POST" });
      assert.equal(refused.status, 401);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await w.close();
    }
  });
});

describe("cold history", () => {
  test("a partition older than HISTORY_HOT_DAYS moves to R2 and its pages read it from there", async () => {
    const w = await startWorker({
      bindings: { HISTORY_PARTITION_DAYS: "1", HISTORY_HOT_DAYS: "2", HISTORY_RETENTION_DAYS: "30", LOG_CAP: "4" },
    });
    try {
      const a = await w.connect("c1");
      const b = await w.connect("c2");
      for (let i = 0; i < 12; i++) {
        await chat(a, "c1", "c2", `old ${i}`);
        await b.nextJson();
      }
      await w.api("/api/sys-msg", { uid: "c2", type: "old notice" });
      await b.nextJson();
      await eventually(async () => (await w.historyRows()).length === 13, 10000);
      await Promise.all([a.close(), b.close()]);
      // Those rows were written five days ago, as far as the partitions say.
      const today = Math.floor(Date.now() / 86400000);
      const old = today - 5;
      for (const db of await w.shards()) {
        for (const { tbl } of (await db.prepare("SELECT tbl FROM partitions").all()).results) {
          await db.prepare(`ALTER TABLE ${tbl} RENAME TO history_${old}`).run();
          await db.prepare("UPDATE partitions SET tbl = ?1, first_day = ?2, end_day = ?3 WHERE tbl = ?4").bind(`history_${old}`, old, old + 1, tbl).run();
        }
      }
      // A new runtime's writers open today's partition and move old ones out.
      await w.restart();
      const before = await metrics(w);
      const c = await w.connect("c1");
      await chat(c, "c1", "c2", "new");
      await eventually(async () => (await metrics(w)).partitions_exported > before.partitions_exported, 10000);
      await eventually(async () => (await w.historyRows()).length === 1, 10000);
      const bucket = await w.mf.getR2Bucket("COLD");
      const keys = (await bucket.list({ prefix: "history/" })).objects.map((o) => o.key);
      assert.deepEqual(keys.sort(), [`history/s:c2/${String(old).padStart(10, "0")}`, `history/u:c1|c2/${String(old).padStart(10, "0")}`]);
      for (const db of await w.shards()) {
        const tables = (await db.prepare("SELECT name FROM sqlite_master WHERE name = ?1").bind(`history_${old}`).all()).results;
        assert.equal(tables.length, 0, "the old partition left D1");
      }
      // Every page as before: the log, then D1, then R2.
      const legacy = await (await w.history("c2", { limit: "50" })).json();
      assert.deepEqual(legacy.usr.map((m) => m.message), ["new", ...Array.from({ length: 12 }, (_, i) => `old ${11 - i}`)]);
      assert.deepEqual(legacy.sys.map((m) => m.type), ["old notice"]);
      const older = await (await w.history("c2", { limit: "3", before: "5" })).json();
      assert.deepEqual(older.usr.map((m) => m.message), ["old 3", "old 2", "old 1"]);
      const v1 = await (await w.fetch("/v1/history?after=0&limit=50", { headers: { authorization: `Bearer ${token("c1")}` } })).json();
      assert.deepEqual(v1.items.map((m) => m.seq), Array.from({ length: 13 }, (_, i) => i + 1));
      assert.deepEqual(v1.items.map((m) => m.kind), Array(13).fill("out"));
      assert.ok((await metrics(w)).cold_objects_read > 0);
      await c.close();
    } finally {
      await w.close();
    }
  });
});
