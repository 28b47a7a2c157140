// Baseline: the smallest JavaScript version of our two-object design, written
// for the benchmark. A's object gets a chat on its socket, forwards it to B's
// object with a stub fetch, B's object writes it to B's sockets, A gets "ok".
// With QUEUE=1, B's object also inserts the message into a DO SQLite queue
// and deletes it once written to a socket (the cheapest durable version).
// With QUEUE=2, additionally A's object keeps its own copy of every chat it
// sends, as edge-chat's per-user logs do (two durable writes per message).
// No auth, no validation, no history: this is the runtime's ceiling.

export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const uid = url.searchParams.get("uid");
    if (url.pathname !== "/ws" || !uid) return new Response("not found", { status: 404 });
    return env.USER.get(env.USER.idFromName(uid)).fetch(req);
  },
};

export class UserObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
    this.queue = env.QUEUE === "1" || env.QUEUE === "2";
    this.senderCopy = env.QUEUE === "2";
    if (this.queue) {
      ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS q (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)");
      ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS sent (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    }
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("heartbeat", "heartbeat"));
  }

  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/deliver") {
      const body = await req.text();
      let seq = 0;
      if (this.queue) seq = this.ctx.storage.sql.exec("INSERT INTO q (body) VALUES (?) RETURNING seq", body).one().seq;
      let sent = false;
      for (const ws of this.ctx.getWebSockets()) {
        try {
          ws.send(body);
          sent = true;
        } catch {}
      }
      if (this.queue && sent) this.ctx.storage.sql.exec("DELETE FROM q WHERE seq = ?", seq);
      return new Response(null, { status: sent ? 200 : 202 });
    }
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async webSocketMessage(ws, text) {
    const msg = JSON.parse(text);
    const stub = this.env.USER.get(this.env.USER.idFromName(String(msg.toUser)));
    const res = await stub.fetch("https://user/deliver", { method: "POST", body: text });
    if (this.senderCopy && res.status < 300) {
      if (this.env.BATCH !== "0") {
        // Group commit: the first copy waits one timer tick for others, all are
        // written in one go, and every "ok" goes out after that write.
        (this.pending ??= []).push(text);
        this.flushed ??= new Promise((resolve) =>
          setTimeout(() => {
            const rows = this.pending;
            this.pending = [];
            this.flushed = undefined;
            for (const t of rows) this.ctx.storage.sql.exec("INSERT INTO sent (body) VALUES (?)", t);
            resolve();
          }, Number(this.env.BATCH_MS)),
        );
        await this.flushed;
      } else this.ctx.storage.sql.exec("INSERT INTO sent (body) VALUES (?)", text);
    }
    ws.send(res.status < 300 ? "ok" : "error");
  }

  async webSocketClose(ws, code) {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, "closing");
  }
}
