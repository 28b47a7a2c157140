// Runs the built worker for the Schemathesis run (tests/api/run.sh), with
// some state for the client's answers to show (chats both ways, a system
// message, a block and a mute, an edit and a delete, a group `gst` with
// messages and a read: the ids docs/openapi.yaml's examples name), prints
// one JSON line with its URL, a client token and the API key, then serves
// until stdin closes.
import { API_KEY, connectV1, startWorker, token } from "../harness.mjs";

const w = await startWorker();
const me = "st-user";
await w.api("/api/sys-msg", { uid: me, type: "notice", text: "welcome" });
await w.api("/api/usr-msg", [
  { fromUser: "st-peer", toUser: me, message: "hi" },
  { fromUser: me, toUser: "st-peer", message: "hello" },
]);
const c = await connectV1(w, me);
const sent = await c.request({ op: "send", to: "st-other", cmid: "s1", body: { message: "to edit" } });
await c.request({ op: "edit", mid: sent.mid, cmid: "e1", body: { message: "edited" } });
const gone = await c.request({ op: "send", to: "st-other", cmid: "s2", body: { message: "to delete" } });
await c.request({ op: "delete", mid: gone.mid, for: "everyone", cmid: "d1" });
await c.request({ op: "block", user: "st-blocked" });
await c.request({ op: "mute", peer: "st-peer", until: Date.now() + 3600_000 });
await c.close();
// A group the user owns (docs/openapi.yaml's examples name it and its members).
const group = async (uid, method, path, body) => {
  const res = await w.fetch(`/v1/groups${path}`, {
    method,
    headers: { authorization: `Bearer ${token(uid)}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`seeding ${method} /v1/groups${path}: ${res.status} ${await res.text()}`);
};
await group(me, "POST", "", { group: "gst", members: ["st-peer", "st-other"] });
await group(me, "POST", "/gst/messages", { message: "hello, group", cmid: "g1" });
await group("st-peer", "POST", "/gst/messages", { message: "hi all" });
await group(me, "POST", "/gst/read", { up_to: 3 });
console.log(JSON.stringify({ url: w.url, clientToken: token(me), apiKey: API_KEY }));
process.stdin.resume();
process.stdin.on("close", async () => {
  await w.close();
  process.exit(0);
});
