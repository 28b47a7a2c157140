// Client tokens, hardening (issue 24): a far-future `exp` on every route and
// the socket's alarm (item 1), and one-time socket tickets, so that a
// long-lived token never travels in a URL (item 8).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, openClient, startWorker, token } from "../harness.mjs";

describe("a far-future exp (item 1)", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  // 2^53 - 1, 2^53, 2^64 - 1 (JSON.stringify writes 18446744073709552000), 1e308,
  // and 1e13 (a socket opened, but its alarm was past a JS Date's range).
  const far = [["2^53-1", 2 ** 53 - 1], ["2^53", 2 ** 53], ["2^64-1", 2 ** 64 - 1], ["1e308", 1e308], ["1e13", 1e13]];

  for (const [name, exp] of far) {
    test(`exp ${name}: /v1/history, a legacy socket and a chat.v1 socket all accept the token`, async () => {
      const uid = `far-${name.replace(/\W/g, "")}`;
      const t = token(uid, { exp });
      const r = await w.fetch("/v1/history", { headers: { authorization: `Bearer ${t}` } });
      assert.equal(r.status, 200);
      const legacy = await w.connect(uid, { tokenValue: t });
      const v1 = await connectV1(w, uid, { tokenValue: t });
      assert.equal(v1.welcome.user, uid);
      await Promise.all([legacy.close(), v1.close()]);
    });
  }

  test("exp 1e13: the socket's alarm is set and runs (the archive reaches history)", async () => {
    const t = token("far-alarm", { exp: 1e13 });
    const a = await connectV1(w, "far-alarm", { tokenValue: t });
    const sent = await a.request({ op: "send", to: "far-peer", cmid: "c1", body: { message: "to the archive" } });
    assert.equal(sent.op, "sent");
    // The archive runs from the object's alarm (ARCHIVE_DELAY_MS 50 here).
    await eventually(async () => (await w.historyRows()).some((r) => r.sender === "far-alarm"), 10000);
    assert.doesNotMatch(w.output, /alarm_not_set/);
    assert.doesNotMatch(w.output, /can't be represented/);
    await a.close();
  });
});
