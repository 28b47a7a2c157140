// Unit tests of the client SDK's side of consent to be put in a group
// (client/dist) against a fake WebSocket: setGroupAdds and the settings it
// follows, a create's `refused` members, and an add's `add_refused`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChatError, GROUP_RE, groupId, isGroupAdds } from "../../../client/dist/index.js";
import { open, setup } from "../fake.mjs";

const calls = (ws, call) => ws.frames("group").filter((f) => !call || f.call === call);

describe("group consent", () => {
  test("setGroupAdds sends a settings change; the settings event and chat.settings follow the server", async () => {
    const t = setup();
    const ws = await open(t);
    assert.equal(t.chat.settings.group_adds, "contacts", "the server's default, from the welcome");
    const p = t.chat.setGroupAdds("nobody");
    await t.clock.advance(0);
    const [f] = ws.frames("settings");
    assert.deepEqual({ ...f, id: 0 }, { op: "settings", id: 0, group_adds: "nobody" });
    ws.push({ op: "ok", re: f.id });
    await p;
    ws.push({ op: "settings", settings: { hide_presence: false, group_adds: "nobody" } });
    assert.deepEqual(t.chat.settings, { hide_presence: false, group_adds: "nobody" });
    await assert.rejects(t.chat.setGroupAdds("friends"), (e) => e instanceof ChatError && e.code === "bad_field" && e.field === "group_adds");
    assert.deepEqual([isGroupAdds("everyone"), isGroupAdds("contacts"), isGroupAdds("nobody"), isGroupAdds("all")], [true, true, true, false]);
  });

  test("an older server's settings have no group_adds: it took anyone", async () => {
    const t = setup();
    await open(t, { settings: { hide_presence: false } });
    assert.equal(t.chat.settings.group_adds, "everyone");
  });

  test("a create names the members left out; an add the user refuses rejects with add_refused", async () => {
    const t = setup();
    const ws = await open(t);
    const made = t.chat.createGroup(["u2", "u3"], { group: "g:team" });
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 201, { group: "g:team", group_seq: 1, refused: ["u3"] });
    assert.deepEqual(await made, { group: "g:team", group_seq: 1, refused: ["u3"], duplicate: false });
    const add = t.chat.addMember("gteam", "u3");
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 403, { error: "that user does not accept being added to groups by you", code: "add_refused" });
    await assert.rejects(add, (e) => e.code === "add_refused" && e.status === 403 && e.retry === false);
    const odd = t.chat.createGroup(["u2"], { group: "godd" });
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 201, { group: "godd", group_seq: 1, refused: "u2" });
    await assert.rejects(odd, (e) => e.code === "protocol");
  });

  test("group ids: entries stored before the g: form reach the app in it, so one group has one id", async () => {
    assert.deepEqual([groupId("gteam"), groupId("g:team"), groupId("bob")], ["g:team", "g:team", "bob"]);
    assert.ok(GROUP_RE.test("g:team") && GROUP_RE.test("gteam") && !GROUP_RE.test("g:Team"));
    const t = setup();
    const ws = await open(t);
    ws.group(1, "gteam", 1, { fromUser: "u3", message: "before" });
    ws.group(2, "g:team", 2, { fromUser: "u3", message: "after" });
    ws.push({ op: "group_read", group: "gteam", group_seq: 2, read: 1, of: 2 });
    await t.clock.advance(100);
    assert.deepEqual(t.r.groupMessages.map((m) => [m.group, m.body.message]), [["g:team", "before"], ["g:team", "after"]]);
  });
});
