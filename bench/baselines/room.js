// Reference design for the cost comparison: the classic edge chat demo, one
// room object per conversation that stores every message in its SQLite and
// broadcasts it to the room's sockets. Written for the benchmark; it counts
// the rows its statements read and write, like edge-chat's /api/metrics.

const counts = { do_ws_messages: 0, do_fetches: 0, sql_rows_read: 0, sql_rows_written: 0, messages_stored: 0, worker_requests: 0 };

function run(sql, query, ...binds) {
  const cursor = sql.exec(query, ...binds);
  const rows = cursor.toArray();
  counts.sql_rows_read += cursor.rowsRead;
  counts.sql_rows_written += cursor.rowsWritten;
  return rows;
}

export default {
  async fetch(req, env) {
    counts.worker_requests++;
    const url = new URL(req.url);
    if (url.pathname === "/api/metrics") return Response.json(counts);
    const room = url.searchParams.get("room");
    if (url.pathname !== "/ws" || !room) return new Response("not found", { status: 404 });
    return env.ROOM.get(env.ROOM.idFromName(room)).fetch(req);
  },
};

export class Room {
  constructor(ctx) {
    this.ctx = ctx;
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("heartbeat", "heartbeat"));
  }

  async fetch(req) {
    counts.do_fetches++;
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async webSocketMessage(ws, text) {
    counts.do_ws_messages++;
    run(this.ctx.storage.sql, "INSERT INTO messages (body) VALUES (?)", text);
    counts.messages_stored++;
    for (const other of this.ctx.getWebSockets()) if (other !== ws) other.send(text);
    ws.send("ok");
  }

  async webSocketClose(ws, code) {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, "closing");
  }
}
