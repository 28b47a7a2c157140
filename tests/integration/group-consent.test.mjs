// Consent to be put in a group, against the real runtime with the
// production default (`group_adds` = contacts): the group's object asks the
// added user's object at create and add time; a user is never put in a
// group by someone they blocked; a block placed after joining keeps the
// blocked member's messages out of the blocker's log.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { callJson, connectV1, startWorker } from "../harness.mjs";

/** An HTTP call as `uid`; resolves with status and JSON. */
const call = callJson;

const group = (w, uid, method, path, body) => call(w, uid, method, `/v1/groups${path}`, body);
const members = async (w, uid, g) => (await group(w, uid, "GET", `/${g}`)).body.members.map((m) => m.user).sort();

/** `from` sends `to` a 1:1 chat (which makes `to` a contact of `from`). */
async function chat(w, from, to) {
  const c = await connectV1(w, from, { device: "chat" });
  const sent = await c.request({ op: "send", to, cmid: `c-${from}-${to}`, body: { message: "hi" } });
  assert.equal(sent.op, "sent");
  c.close();
}

describe("group consent", () => {
  let w;
  before(async () => {
    w = await startWorker({ omit: ["GROUP_ADDS_DEFAULT"] });
  });
  after(() => w.close());

  test("contacts by default: a stranger's add is refused, a contact's goes through; the setting changes it", async () => {
    const got = await call(w, "ks1", "GET", "/v1/settings");
    assert.deepEqual(got.body, { hide_presence: false, group_adds: "contacts" });
    const made = await group(w, "ko1", "POST", "", { group: "gconsent1", members: [] });
    assert.equal(made.status, 201);
    const refused = await group(w, "ko1", "POST", "/gconsent1/members", { user: "ks1" });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, "add_refused");
    assert.deepEqual(await members(w, "ko1", "gconsent1"), ["ko1"], "nothing changed");
    // ks1 writes to ko1: ko1 is now a contact of ks1's.
    await chat(w, "ks1", "ko1");
    assert.equal((await group(w, "ko1", "POST", "/gconsent1/members", { user: "ks1" })).status, 200);
    // Nobody: not even a contact.
    const kn = "kn1";
    await chat(w, kn, "ko1");
    const put = await call(w, kn, "PUT", "/v1/settings", { group_adds: "nobody" });
    assert.deepEqual(put.body, { hide_presence: false, group_adds: "nobody" });
    assert.equal((await group(w, "ko1", "POST", "/gconsent1/members", { user: kn })).body.code, "add_refused");
    // Everyone: strangers too; a device learns the setting in its welcome.
    assert.equal((await call(w, "ke1", "PUT", "/v1/settings", { group_adds: "everyone" })).status, 200);
    assert.equal((await group(w, "ko1", "POST", "/gconsent1/members", { user: "ke1" })).status, 200);
    const dev = await connectV1(w, "ke1");
    assert.equal(dev.welcome.settings.group_adds, "everyone");
    dev.close();
    assert.equal((await call(w, "ke1", "PUT", "/v1/settings", { group_adds: "friends" })).status, 400);
    assert.deepEqual(await members(w, "ko1", "gconsent1"), ["ke1", "ko1", "ks1"]);
  });

  test("whom one blocked can neither create a group with one nor add one back after one left", async () => {
    const [b, m, c] = ["kb2", "km2", "kc2"];
    await chat(w, b, m);
    await call(w, c, "PUT", "/v1/settings", { group_adds: "everyone" });
    // b is in m's group (m is b's contact), leaves, then blocks m.
    assert.equal((await group(w, m, "POST", "", { group: "gconsent2", members: [b] })).status, 201);
    assert.deepEqual(await members(w, m, "gconsent2"), [b, m]);
    assert.equal((await group(w, b, "DELETE", `/gconsent2/members/${b}`)).status, 200);
    assert.equal((await call(w, b, "PUT", `/v1/blocks/${m}`)).status, 200);
    const back = await group(w, m, "POST", "/gconsent2/members", { user: b });
    assert.equal(back.status, 403);
    assert.equal(back.body.code, "add_refused", "the same refusal as a setting's: the block stays private");
    // A new group: made with those who accept, the others named.
    const made = await group(w, m, "POST", "", { group: "gconsent3", members: [b, c] });
    assert.equal(made.status, 201);
    assert.deepEqual(made.body, { group: "g:consent3", group_seq: 1, refused: [b] });
    assert.deepEqual(await members(w, m, "gconsent3"), [c, m]);
    const asB = await group(w, b, "GET", "/gconsent3");
    assert.equal(asB.status, 403, "b is no member");
  });

  test("a block placed after joining keeps the blocked member's messages out of the blocker's log", async () => {
    const [b, m, c] = ["kb3", "km3", "kc3"];
    for (const u of [b, m, c]) await call(w, u, "PUT", "/v1/settings", { group_adds: "everyone" });
    assert.equal((await group(w, c, "POST", "", { group: "gconsent4", members: [b, m] })).status, 201);
    assert.equal((await call(w, b, "PUT", `/v1/blocks/${m}`)).status, 200);
    assert.equal((await group(w, m, "POST", "/gconsent4/messages", { message: "from m" })).status, 200);
    assert.equal((await group(w, c, "POST", "/gconsent4/messages", { message: "from c" })).status, 200);
    const dev = await connectV1(w, b, { since: 0 });
    const seen = [];
    // Deliveries reach a member in group_seq order: once c's message (after
    // m's) is in b's log, m's would be too had it been kept.
    while (!seen.includes("from c")) {
      const f = await dev.msg(15_000);
      if (f.kind === "group") seen.push(f.body.message ?? f.body.change);
      dev.send({ op: "ack", up_to: f.seq });
    }
    assert.deepEqual(seen, ["created", "from c"]);
    dev.close();
    // m's own log has both: the group stores and delivers to everyone else.
    const asM = await group(w, m, "GET", "/gconsent4");
    assert.equal(asM.body.head, 3);
  });

  test("group ids have a namespace no user id has; a group named in the older form is the same group", async () => {
    const [a, b] = ["kn4", "kb4"];
    for (const u of [a, b, "gold4"]) await call(w, u, "PUT", "/v1/settings", { group_adds: "everyone" });
    // Made with the older form (gold4): the server answers with the new one.
    const made = await group(w, a, "POST", "", { group: "gold4", members: [b] });
    assert.deepEqual([made.status, made.body.group], [201, "g:old4"]);
    // Every spelling reaches the same group: one sequence.
    const seqs = [];
    for (const path of ["/gold4/messages", "/g:old4/messages", "/g%3Aold4/messages"]) {
      const sent = await group(w, a, "POST", path, { message: path });
      seqs.push(sent.body.group_seq);
    }
    assert.deepEqual(seqs, [2, 3, 4]);
    const viaFrame = await connectV1(w, a, { device: "frames" });
    const info = await viaFrame.request({ op: "group", call: "info", group: "g:old4" });
    assert.deepEqual([info.body.group, info.body.head], ["g:old4", 4]);
    viaFrame.close();
    // A user whose id is the older form of the group's is someone else.
    await chat(w, "gold4", b);
    const dev = await connectV1(w, b, { since: 0 });
    const bodies = [];
    while (bodies.length < 5) {
      const f = await dev.msg(15_000);
      bodies.push(f.kind === "group" ? `group ${f.body.group}` : `chat ${f.peer}`);
      dev.send({ op: "ack", up_to: f.seq });
    }
    assert.deepEqual(bodies, ["group g:old4", "group g:old4", "group g:old4", "group g:old4", "chat gold4"]);
    dev.close();
    const list = await call(w, b, "GET", "/v1/conversations");
    const peers = list.body.items.map((i) => [i.peer, i.group ?? null]).sort();
    assert.deepEqual(peers, [["g:old4", "g:old4"], ["gold4", null]]);
    for (const q of ["gold4", "g:old4"]) {
      const page = await call(w, b, "GET", `/v1/history?group=${encodeURIComponent(q)}&limit=10`);
      assert.deepEqual(page.body.items.map((i) => i.group_seq), [4, 3, 2, 1], q);
    }
  });
});
