// Randomized: connects, drops, sends (socket and backend API), acks and
// runtime restarts interleaved; every message the server acknowledged must
// reach every device exactly once, in seq order, with no gap.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, startWorker } from "../harness.mjs";

function rng(seed) {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 16) % n;
  };
}

// RANDOM_SEEDS=n runs seeds 1..n instead (docs/reliability.md's longer run).
const SEEDS = process.env.RANDOM_SEEDS ? Array.from({ length: Number(process.env.RANDOM_SEEDS) }, (_, i) => i + 1) : [11, 29];

describe("randomized delivery with restarts", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  for (const seed of SEEDS) {
    test(`seed ${seed}: every acknowledged message reaches every device once, in order`, async () => {
      const r = rng(seed);
      const user = `z${seed}`;
      const sender = `zs${seed}`;
      const devices = ["phone", "laptop"].map((name) => ({ name, conn: null, processed: 0, got: [] }));
      let senderConn = null;
      const acknowledged = new Set(); // mids the server answered for
      let sends = 0;
      let restarts = 0;

      const drain = async (d, waitMs = 30) => {
        if (!d.conn) return;
        for (;;) {
          let m;
          try {
            m = await d.conn.msg(waitMs);
          } catch {
            return;
          }
          assert.equal(m.seq, d.processed + 1, `${d.name}: seq after ${d.processed}`);
          d.processed = m.seq;
          d.got.push(m);
        }
      };

      for (let step = 0; step < 120; step++) {
        const op = r(10);
        const d = devices[r(devices.length)];
        if (op <= 2) {
          const res = await w.api("/api/sys-msg", { uid: user, type: "notice", step });
          assert.equal(res.status, 200);
          acknowledged.add((await res.json()).id);
          sends++;
        } else if (op === 3) {
          senderConn ??= await connectV1(w, sender, { device: "s" });
          const reply = await senderConn.request({ op: "send", to: user, cmid: `c${step}`, body: { message: `step ${step}` } });
          assert.equal(reply.op, "sent");
          acknowledged.add(reply.mid);
          sends++;
        } else if (op === 4 && !d.conn) {
          d.conn = await connectV1(w, user, { device: d.name, since: d.processed });
          assert.equal(d.conn.welcome.recovered, true);
          assert.equal(d.conn.welcome.since, d.processed);
        } else if (op === 5 && d.conn) {
          d.conn.kill();
          d.conn = null;
        } else if (op === 6) {
          await drain(d);
          if (d.conn && r(2) === 0) d.conn.send({ op: "ack", up_to: d.processed });
        } else if ((op === 7 && r(3) === 0) || step % 40 === 39) {
          for (const x of devices) {
            x.conn?.kill();
            x.conn = null;
          }
          senderConn?.kill();
          senderConn = null;
          await w.restart();
          restarts++;
        } else {
          await drain(d, 5);
        }
      }
      for (const d of devices) {
        d.conn?.kill();
        d.conn = await connectV1(w, user, { device: d.name, since: d.processed });
        while (d.processed < d.conn.welcome.head) await drain(d, 500);
        const mids = d.got.filter((m) => m.kind !== "out").map((m) => m.mid);
        assert.equal(new Set(mids).size, mids.length, `${d.name}: a message arrived twice`);
        for (const mid of acknowledged) assert.ok(mids.includes(mid), `${d.name}: acknowledged ${mid} never arrived`);
        assert.deepEqual(d.got.map((m) => m.seq), Array.from({ length: d.processed }, (_, i) => i + 1));
        await d.conn.close();
      }
      senderConn?.kill();
      assert.ok(sends > 10 && restarts >= 1, `the run exercised sends (${sends}) and restarts (${restarts})`);
      console.log(`random seed ${seed}: ${sends} sends, ${restarts} restarts, ${acknowledged.size} acknowledged, 0 lost`);
    });
  }
});
