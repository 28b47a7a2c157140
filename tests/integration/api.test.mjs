// The backend API: system and user messages posted with one HTTP call.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, startWorker } from "../harness.mjs";

describe("backend API", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("sys-msg delivers the object as is, adding time and id when absent", async () => {
    const b = await w.connect("201");
    const r = await w.api("/api/sys-msg", { uid: 201, type: "comment", contentId: 12, song: { name: "s" } });
    assert.equal(r.status, 200);
    const { id } = await r.json();
    assert.equal(typeof id, "string");
    const m = await b.nextJson();
    assert.deepEqual(Object.keys(m).sort(), ["contentId", "id", "song", "time", "type", "uid"]);
    assert.equal(m.id, id);
    assert.equal(m.uid, 201);
    assert.match(m.time, /^\d{4}-\d\d-\d\dT/);
    await w.api("/api/sys-msg", { uid: "201", type: "x", time: "2020-01-01T00:00:00Z" });
    assert.equal((await b.nextJson()).time, "2020-01-01T00:00:00Z", "a given time is kept");
    await b.close();
  });

  test("an array body sends many in one call, in order", async () => {
    const b = await w.connect("202");
    const c = await w.connect("203");
    const items = [
      { uid: 202, type: "n1" },
      { uid: 203, type: "m1" },
      { uid: 202, type: "n2" },
      { uid: 202, type: "n3" },
    ];
    const r = await w.api("/api/sys-msg", items);
    assert.equal(r.status, 200);
    const { ids } = await r.json();
    assert.equal(ids.length, 4);
    assert.deepEqual([(await b.nextJson()).type, (await b.nextJson()).type, (await b.nextJson()).type], ["n1", "n2", "n3"]);
    assert.equal((await c.nextJson()).id, ids[1]);
    await Promise.all([b.close(), c.close()]);
  });

  test("usr-msg is delivered like a chat and kept in the sender's history", async () => {
    const b = await w.connect("205");
    const r = await w.api("/api/usr-msg", { fromUser: 204, toUser: 205, message: "from the backend", extra: 1 });
    assert.equal(r.status, 200);
    const { id } = await r.json();
    const m = await b.nextJson();
    assert.deepEqual({ ...m, time: undefined }, { fromUser: 204, toUser: 205, message: "from the backend", extra: 1, id, time: undefined });
    const page = await (await w.history("204")).json();
    assert.deepEqual(page.usr.map((x) => x.id), [id]);
    await b.close();
  });

  const bad = [
    ["/api/sys-msg", '{"type":"x"}', "uid"],
    ["/api/sys-msg", '{"uid":"a b"}', "uid"],
    ["/api/sys-msg", '{"uid":[1]}', "uid"],
    ["/api/usr-msg", '{"toUser":2,"message":"m"}', "fromUser"],
    ["/api/usr-msg", '{"fromUser":1,"toUser":"a/b","message":"m"}', "toUser"],
    ["/api/usr-msg", '{"fromUser":1,"toUser":2,"message":""}', "message"],
  ];
  for (const [path, body, field] of bad) {
    test(`400 names the bad field: ${path} ${body}`, async () => {
      const r = await w.api(path, body);
      assert.equal(r.status, 400);
      const e = await r.json();
      assert.equal(e.field, field);
      assert.match(e.error, new RegExp(field));
    });
  }

  test("one bad item in an array stores nothing", async () => {
    const r = await w.api("/api/sys-msg", [{ uid: 210, type: "a" }, { uid: 210, type: "b" }, { type: "no uid" }]);
    assert.equal(r.status, 400);
    const e = await r.json();
    assert.equal(e.index, 2);
    assert.equal(e.field, "uid");
    const b = await w.connect("210");
    await b.expectSilence(200);
    const page = await (await w.history("210")).json();
    assert.deepEqual(page, { sys: [], usr: [], next: null });
    await b.close();
  });

  test("a body that is not JSON is a 400", async () => {
    const r = await w.api("/api/sys-msg", "{oops");
    assert.equal(r.status, 400);
    assert.match((await r.json()).error, /not JSON/);
  });

  test("a body over 1 MiB is a 413", async () => {
    const r = await w.api("/api/sys-msg", JSON.stringify({ uid: 1, pad: "x".repeat(1024 * 1024) }));
    assert.equal(r.status, 413);
  });

  test("messages posted while the user is offline are queued", async () => {
    for (let i = 0; i < 3; i++) assert.equal((await w.api("/api/sys-msg", { uid: 220, n: i })).status, 200);
    const b = await w.connect("220");
    for (let i = 0; i < 3; i++) assert.equal((await b.nextJson()).n, i);
    await b.close();
    await eventually(async () => (await (await w.history("220")).json()).sys.length === 3);
  });
});
