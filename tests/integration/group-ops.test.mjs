// Group features of issue 24 against the real runtime: the backend's
// moderation of a group message (delete and edit through /api/delete and
// /api/edit, reaching every member's devices as op frames, history showing
// the current state), and members' read positions hidden by hide_presence.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { callJson, connectV1, eventually, startWorker, token } from "../harness.mjs";

/** A call with the API key (`headers` added); resolves with status and JSON. */
const api = (w, method, path, body, headers) => callJson(w, null, method, path, body, headers);

/** A call with `uid`'s token; resolves with status and JSON. */
const as = callJson;

describe("group moderation and hidden reads", () => {
  let w;
  before(async () => {
    w = await startWorker();
  });
  after(() => w.close());

  test("the backend deletes and edits a group message: every member's devices get the op, history shows the current state", async () => {
    const made = await api(w, "POST", "/api/groups", { group: "gmod1", owner: "moa", members: ["mob", "moc"] });
    assert.equal(made.status, 201);
    const bob = await connectV1(w, "mob", { device: "d", since: 0 });
    const carol = await connectV1(w, "moc", { device: "d", since: 0 });
    const send = async (text) => {
      const r = await as(w, "moa", "POST", "/v1/groups/gmod1/messages", { message: text });
      assert.equal(r.status, 200);
      return r.body;
    };
    const spam = await send("buy now");
    const typo = await send("helo");
    for (const c of [bob, carol]) {
      for (const want of ["created", "buy now", "helo"]) {
        const f = await c.msg();
        assert.equal(f.kind, "group");
        assert.equal(f.body.message ?? f.body.change, want);
        c.send({ op: "ack", up_to: f.seq });
      }
    }

    // Named by its group (and, optionally, its sender).
    const key = { "idempotency-key": "mod-1" };
    const del = await api(w, "POST", "/api/delete", { group: "gmod1", mid: spam.id, user: "moa" }, key);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.duplicate, false);
    assert.equal(del.body.group_seq, 4);
    for (const c of [bob, carol]) {
      const f = await c.msg();
      assert.equal(f.kind, "delete");
      assert.equal(f.peer, null);
      assert.equal(f.mid, del.body.id);
      assert.equal(f.body.target, spam.id);
      assert.equal(f.body.for, "everyone");
      assert.equal(f.body.body.message, undefined);
      assert.equal(typeof f.body.body.deleted_at, "string");
      assert.equal(f.body.body.group_seq, spam.group_seq);
      c.send({ op: "ack", up_to: f.seq });
    }
    // A retry changes nothing and answers the same op.
    const again = await api(w, "POST", "/api/delete", { group: "gmod1", mid: spam.id }, key);
    assert.deepEqual(again.body, { ...del.body, duplicate: true });
    assert.equal((await api(w, "POST", "/api/delete", { group: "gmod1", mid: spam.id })).status, 409);
    // Not that user's message, or no such message: 404.
    assert.equal((await api(w, "POST", "/api/delete", { group: "gmod1", mid: typo.id, user: "mob" })).status, 404);
    assert.equal((await api(w, "POST", "/api/delete", { group: "gmod1", mid: "0".repeat(28) })).status, 404);

    const edit = await api(w, "POST", "/api/edit", { group: "gmod1", mid: typo.id, body: { message: "hello" } });
    assert.equal(edit.status, 200, JSON.stringify(edit.body));
    const f = await bob.msg();
    assert.equal(f.kind, "edit");
    assert.equal(f.body.target, typo.id);
    assert.equal(f.body.body.message, "hello");
    assert.equal(f.body.body.edit_version, 1);
    bob.send({ op: "ack", up_to: f.seq });
    await bob.expectNone((x) => x.op === "msg", 300);

    // History: the tombstone and the edit in the messages' places, no op items.
    const page = await as(w, "mob", "GET", "/v1/history?group=gmod1");
    assert.equal(page.status, 200);
    assert.deepEqual(
      page.body.items.map((i) => i.group_seq),
      [3, 2, 1],
    );
    const [edited, gone] = page.body.items;
    assert.equal(edited.body.message, "hello");
    assert.equal(gone.body.message, undefined);
    assert.equal(typeof gone.body.deleted_at, "string");
    // The conversation list shows the current state too.
    const convs = await as(w, "mob", "GET", "/v1/conversations");
    const g = convs.body.items.find((c) => c.group === "g:mod1");
    assert.equal(g.last.body.message, "hello");
    bob.close();
    carol.close();
  });

  test("a moderation call naming a group message by its sender (user, mid) reaches the group", async () => {
    assert.equal((await api(w, "POST", "/api/groups", { group: "gmod2", owner: "mua", members: ["mub"] })).status, 201);
    const bob = await connectV1(w, "mub", { device: "d", since: 0 });
    const sent = await as(w, "mua", "POST", "/v1/groups/gmod2/messages", { message: "oops" });
    assert.equal(sent.status, 200);
    for (let i = 0; i < 2; i++) bob.send({ op: "ack", up_to: (await bob.msg()).seq });
    // Named as a chat is: the sender's object finds it is a group message.
    assert.equal((await api(w, "POST", "/api/delete", { user: "mub", mid: sent.body.id })).status, 404, "not mub's");
    const key = { "idempotency-key": "mod-2" };
    const del = await api(w, "POST", "/api/delete", { user: "mua", mid: sent.body.id }, key);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const f = await bob.msg();
    assert.equal(f.kind, "delete");
    assert.equal(f.mid, del.body.id);
    assert.equal(f.body.target, sent.body.id);
    bob.send({ op: "ack", up_to: f.seq });
    assert.deepEqual((await api(w, "POST", "/api/delete", { user: "mua", mid: sent.body.id }, key)).body, del.body);
    await bob.expectNone((x) => x.op === "msg", 300);
    assert.equal((await api(w, "POST", "/api/delete", { user: "mua", mid: sent.body.id })).status, 409);
    bob.close();
  });

  test("a member who hides their presence shows no read position in group info, but to themself", async () => {
    assert.equal((await as(w, "hia", "POST", "/v1/groups", { group: "ghide1", members: ["hib"] })).status, 201);
    assert.equal((await as(w, "hia", "POST", "/v1/groups/ghide1/messages", { message: "hi" })).status, 200);
    assert.equal((await as(w, "hib", "POST", "/v1/groups/ghide1/read", { up_to: 2 })).status, 200);
    const readOf = async (asker, user) => {
      const info = await as(w, asker, "GET", "/v1/groups/ghide1");
      assert.equal(info.status, 200);
      return info.body.members.find((m) => m.user === user).read;
    };
    assert.equal(await readOf("hia", "hib"), 2, "shown while not hidden");
    // hib hides their presence: their object tells the group.
    assert.equal((await as(w, "hib", "PUT", "/v1/settings", { hide_presence: true })).status, 200);
    await eventually(async () => (await readOf("hia", "hib")) === 0, 10_000);
    assert.equal(await readOf("hib", "hib"), 2, "hib sees their own");
    // Reads while hidden stay hidden; the read count still counts them.
    assert.equal((await as(w, "hia", "POST", "/v1/groups/ghide1/messages", { message: "again" })).status, 200);
    const bob = await connectV1(w, "hib", { device: "d" });
    const r = await bob.request({ op: "group", call: "read", group: "ghide1", up_to: 3 });
    assert.equal(r.status, 200);
    assert.equal(await readOf("hia", "hib"), 0);
    assert.equal(await readOf("hib", "hib"), 3);
    const counts = await as(w, "hia", "GET", "/v1/groups/ghide1/messages/3/read");
    assert.deepEqual(counts.body, { group_seq: 3, read: 1, of: 1 });
    // Shown again once hib stops hiding.
    bob.send({ op: "settings", id: "s1", hide_presence: false });
    await eventually(async () => (await readOf("hia", "hib")) === 3, 10_000);
    bob.close();
  });
});
