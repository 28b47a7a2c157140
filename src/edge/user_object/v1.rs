//! The `chat.v1` session of a user's object: the handshake and replay, the
//! client's requests, device acks and the receipts they produce, typing, and
//! the HTTP reads (conversation list, v1 history).

use worker::{Headers, Response, WebSocket, WebSocketPair};

use super::{answer, attachment_v1, json_error, send, Device, UserObject, DEVICE_TTL_MS, V1};
use crate::edge::hop;
use crate::edge::{d1, json, now_ms};
use crate::history::{self, log_page, PageQuery};
use crate::inbox::Resume;
use crate::message::{derived_id, Kind};
use crate::metrics::{incr, Counter};
use crate::protocol::v1::{self, close, EntryKind, ReceiptKind, V1Error, Welcome};
use crate::protocol::{Chat, Frame, RequestId};
use crate::relay::{Outcome, Receipt, Typing};
use crate::user::UserId;

impl UserObject {
    /// A new v1 socket: `welcome`, then every entry after `since` (or after
    /// what this device last acknowledged), then live entries. No await in
    /// between, so nothing can come between the replay and the live stream.
    pub(super) fn on_connect_v1(
        &self,
        uid: &UserId,
        device: &str,
        since: Option<u64>,
        exp: u64,
    ) -> worker::Result<Response> {
        self.load(uid)?;
        if UserId::parse(device).is_err() {
            return json_error(400, "device must be 1 to 64 of letters, digits, _ - . @");
        }
        if let Some(refused) = self.refuse_socket()? {
            return Ok(refused);
        }
        self.expire_queue()?;
        let head = self.inbox().head();
        let oldest = self.store.oldest()?.unwrap_or(head + 1);
        let known = self.life.borrow().as_ref().and_then(|l| l.devices.get(device).map(|d| d.acked));
        let Resume { start, recovered } = self.inbox().resume(oldest, since, known);

        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[V1]);
        pair.server.serialize_attachment(attachment_v1(uid, device, exp))?;
        let welcome = Welcome { user: uid, device, head, since: start, recovered, limits: &self.limits };
        send(&pair.server, &welcome.encode())?;
        self.store.entries_after(start, |e| {
            send(&pair.server, &v1::msg(e.seq, entry_kind(e.kind), e.peer.as_deref(), &e.id, &e.body))
        })?;
        // The user now has every entry: those up to `start` this device
        // processed before, the rest were just written to it. Nothing is left
        // to replay to a legacy socket.
        if let Some(first) = self.inbox().first_unsent() {
            self.store.mark_sent(first, head)?;
            self.replayed(first, head, None)?;
        }
        // Saved now, not at the next archive pass: an object evicted before
        // then would forget the device, stop holding entries for it, and
        // resume it at the head.
        let d = self.life.borrow_mut().as_mut().map(|life| {
            let d = life.devices.entry(device.to_owned()).or_insert(Device { acked: start, seen: 0, dirty: true });
            d.seen = now_ms();
            d.dirty = false;
            *d
        });
        if let Some(d) = d {
            self.store.save_device(device, d.acked, d.seen)?;
        }
        self.want_archive();
        let headers = Headers::new();
        headers.set("sec-websocket-protocol", v1::SUBPROTOCOL)?;
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    /// One frame from a v1 socket.
    pub(super) async fn on_v1_frame(
        &self,
        ws: &WebSocket,
        owner: &UserId,
        device: &str,
        exp: u64,
        text: &str,
    ) -> worker::Result<()> {
        if now_ms() / 1000 >= exp {
            return ws.close(Some(close::TOKEN_EXPIRED), Some("token expired"));
        }
        let reply = match v1::parse(text, self.limits.frame_bytes) {
            Err(r) => {
                if r.error == V1Error::TooLarge {
                    incr(Counter::RefusedFrame);
                }
                Some(v1::error(r.re.as_ref(), r.error))
            }
            Ok(Frame::Heartbeat) => Some(crate::protocol::legacy::HEARTBEAT.to_owned()),
            Ok(Frame::Send { id, to, cmid, body }) => Some(self.v1_send(owner, &id, to, cmid, body).await?),
            Ok(Frame::Ack { up_to }) => {
                self.v1_ack(owner, device, up_to)?;
                None
            }
            Ok(Frame::Read { id, peer, up_to }) => Some(self.v1_read(owner, &id, &peer, up_to)?),
            Ok(Frame::History { id, peer, before, after, limit }) => {
                match history::page_limit(limit, self.limits.history_page) {
                    Ok(limit) => {
                        let q = PageQuery { limit, before, after, peer };
                        Some(self.v1_history(owner, &id, &q).await)
                    }
                    Err(_) => {
                        incr(Counter::RefusedPage);
                        Some(v1::error(Some(&id), V1Error::BadField("limit")))
                    }
                }
            }
            Ok(Frame::Typing { to, active }) => {
                let t = Typing { owner: to.clone(), from: owner.clone(), active };
                self.fire(&to, format!("https://user/typing?{}", t.to_query()));
                None
            }
            Ok(Frame::Chat(_)) => Some(v1::error(None, V1Error::BadFrame)),
        };
        match reply {
            Some(r) => send(ws, &r),
            None => Ok(()),
        }
    }

    /// `send`: at most once per client message id. A repeat gets the first
    /// reply; a repeat while the first is still in flight is told to retry.
    async fn v1_send(
        &self,
        owner: &UserId,
        id: &RequestId,
        to: UserId,
        cmid: String,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> worker::Result<String> {
        if let Some((mid, seq)) = self.store.sent_before(&cmid)? {
            return Ok(v1::sent(id, &mid, seq, true));
        }
        if let Err(r) = self.admit_send() {
            return Ok(v1::error(Some(id), V1Error::from_refusal(r)));
        }
        if !self.inflight.borrow_mut().insert(cmid.clone()) {
            return Ok(v1::error(Some(id), V1Error::Unavailable));
        }
        let mid = derived_id("send", owner.as_str(), &cmid);
        let chat = Chat { from: owner.clone(), to, fields: body };
        let result = self.send_chat(owner, chat, &mid, now_ms(), Some(&cmid)).await;
        self.inflight.borrow_mut().remove(&cmid);
        Ok(match result {
            Ok(seq) => v1::sent(id, &mid, seq, false),
            Err(r) => v1::error(Some(id), V1Error::from_refusal(r)),
        })
    }

    /// `ack`: the device processed the log up to `up_to`. Chats it moves past
    /// for the first time (on any device) earn their senders a receipt.
    fn v1_ack(&self, owner: &UserId, device: &str, up_to: u64) -> worker::Result<()> {
        let head = self.inbox().head();
        let up_to = up_to.min(head);
        let before = {
            let mut life = self.life.borrow_mut();
            let Some(life) = life.as_mut() else { return Ok(()) };
            let before = life.devices.values().map(|d| d.acked).max().unwrap_or(0);
            let d = life.devices.entry(device.to_owned()).or_insert(Device { acked: 0, seen: 0, dirty: true });
            if up_to <= d.acked {
                return Ok(());
            }
            *d = Device { acked: up_to, seen: now_ms(), dirty: true };
            before
        };
        if up_to > before {
            for (peer, seq) in self.store.received_by_peer(before, up_to)? {
                let Ok(peer) = UserId::parse(&peer) else { continue };
                let r = Receipt { owner: peer.clone(), from: owner.clone(), read: false, up_to: seq };
                self.fire(&peer, format!("https://user/receipt?{}", r.to_query()));
            }
        }
        self.want_archive();
        Ok(())
    }

    /// `read`: the conversation is read up to `up_to`; every device of the
    /// user learns the new unread count, and the peer gets a read receipt.
    fn v1_read(&self, owner: &UserId, id: &RequestId, peer: &UserId, up_to: u64) -> worker::Result<String> {
        let up_to = up_to.min(self.inbox().head());
        let Some((unread, read_up_to)) = self.store.mark_read(peer.as_str(), up_to)? else {
            return Ok(v1::error(Some(id), V1Error::BadField("peer")));
        };
        let frame = v1::unread(peer.as_str(), unread, read_up_to);
        for ws in self.state.get_websockets_with_tag(V1) {
            let _ = send(&ws, &frame);
        }
        if peer != owner {
            let r = Receipt { owner: peer.clone(), from: owner.clone(), read: true, up_to: read_up_to };
            self.fire(peer, format!("https://user/receipt?{}", r.to_query()));
        }
        Ok(v1::ok(id))
    }

    /// `history` over the socket: a page of the log from D1 as `msg` frames.
    async fn v1_history(&self, owner: &UserId, id: &RequestId, q: &PageQuery) -> String {
        match self.log_page(owner, q).await {
            Ok((items, next)) => v1::history(id, &items, next),
            Err(e) => {
                worker::console_error!("history unavailable: {}", e);
                v1::error(Some(id), V1Error::Unavailable)
            }
        }
    }

    /// Archives what is pending, then reads a page of the log from D1.
    async fn log_page(&self, owner: &UserId, q: &PageQuery) -> worker::Result<(Vec<String>, Option<u64>)> {
        self.archive().await?;
        let rows = d1::log_page(&self.env, owner, q).await?;
        Ok(log_page(&rows, q.limit))
    }

    /// `GET /v1/history`: the same page over HTTP.
    pub(super) async fn on_v1_history(&self, uid: &UserId, q: &PageQuery) -> worker::Result<Response> {
        self.load(uid)?;
        match self.log_page(uid, q).await {
            Ok((items, next)) => {
                let next = next.map_or("null".to_string(), |n| n.to_string());
                json(200, &format!(r#"{{"items":[{}],"next":{next}}}"#, items.join(",")))
            }
            Err(e) => self.history_unavailable(e),
        }
    }

    /// `GET /v1/conversations`: newest activity first, with unread counts.
    pub(super) fn on_conversations(&self, uid: &UserId, q: &PageQuery) -> worker::Result<Response> {
        self.load(uid)?;
        let rows = self.store.conversations(q.before.unwrap_or(u64::MAX >> 11), q.limit + 1)?;
        let page = &rows[..rows.len().min(q.limit as usize)];
        let next = (rows.len() > q.limit as usize).then(|| page.last().map(|c| c.last_seq)).flatten();
        let items: Vec<String> = page
            .iter()
            .map(|c| {
                let last = v1::msg(c.last_seq, entry_kind(c.last_kind), Some(&c.peer), &c.last_mid, &c.last_body);
                let meta = serde_json::json!({
                    "peer": c.peer, "unread": c.unread, "read_up_to": c.read_up_to,
                    "peer_delivered": c.peer_delivered, "peer_read": c.peer_read,
                })
                .to_string();
                // Splice the last entry in as JSON, without re-encoding its body.
                format!(r#"{},"last":{last}}}"#, &meta[..meta.len() - 1])
            })
            .collect();
        let next = next.map_or("null".to_string(), |n| n.to_string());
        json(200, &format!(r#"{{"items":[{}],"next":{next}}}"#, items.join(",")))
    }

    /// `POST /receipt`: a peer received or read this user's messages.
    pub(super) fn on_receipt(&self, receipt: Option<Receipt>) -> worker::Result<Response> {
        let Some(r) = receipt else { return answer(Outcome::Bad, None) };
        self.load(&r.owner)?;
        if let Some(up_to) = self.store.peer_receipt(r.from.as_str(), r.read, r.up_to)? {
            let kind = if r.read { ReceiptKind::Read } else { ReceiptKind::Delivered };
            let frame = v1::receipt(r.from.as_str(), kind, up_to);
            for ws in self.state.get_websockets_with_tag(V1) {
                let _ = send(&ws, &frame);
            }
        }
        Ok(Response::empty()?.with_status(204))
    }

    /// `POST /typing`: shown on this user's live v1 sockets, never stored.
    pub(super) fn on_typing(&self, typing: Option<Typing>) -> worker::Result<Response> {
        let Some(t) = typing else { return answer(Outcome::Bad, None) };
        let frame = v1::typing(t.from.as_str(), t.active);
        for ws in self.state.get_websockets_with_tag(V1) {
            let _ = send(&ws, &frame);
        }
        Ok(Response::empty()?.with_status(204))
    }

    /// A request to another user's object whose answer nobody waits for
    /// (receipts, typing): lost on failure, as these are hints.
    fn fire(&self, peer: &UserId, url: String) {
        let Ok(stub) = self.stub(peer) else { return };
        worker::wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = hop::post(&stub, &url, "").await {
                worker::console_error!("notification hop failed: {:?}", e);
            }
        });
    }

    /// Writes changed device cursors and forgets devices not seen for a while.
    pub(super) fn save_devices(&self) -> worker::Result<()> {
        let cutoff = now_ms().saturating_sub(DEVICE_TTL_MS);
        let dirty: Vec<(String, Device)> = {
            let mut life = self.life.borrow_mut();
            let Some(life) = life.as_mut() else { return Ok(()) };
            life.devices.retain(|_, d| d.seen >= cutoff || d.seen == 0);
            life.devices
                .iter_mut()
                .filter(|(_, d)| d.dirty)
                .map(|(k, d)| {
                    d.dirty = false;
                    (k.clone(), *d)
                })
                .collect()
        };
        for (device, d) in dirty {
            self.store.save_device(&device, d.acked, d.seen)?;
        }
        self.store.forget_devices_unseen_since(cutoff)
    }

    /// The lowest cursor of the devices the log still waits for.
    pub(super) fn devices_acked(&self) -> Option<u64> {
        self.life.borrow().as_ref().and_then(|l| l.devices.values().map(|d| d.acked).min())
    }
}

fn entry_kind(code: i64) -> EntryKind {
    match Kind::from_code(code) {
        Some(Kind::Sent) => EntryKind::Out,
        Some(Kind::System) => EntryKind::Sys,
        _ => EntryKind::In,
    }
}
