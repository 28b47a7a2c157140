//! The per-user Durable Object: a thin adapter from platform events
//! (upgrade, socket message, hop request, alarm) to the core, and from the
//! core's decisions to SQLite writes and socket sends.
//!
//! It never holds a `RefCell` borrow across an `.await`: each handler reads
//! what it needs, awaits, then borrows again.
//!
//! - this file: lifecycle hooks, routing, the legacy protocol, delivery hops
//!   and the history archive;
//! - [`commit`]: group commit of log entries and the pushes that follow;
//! - [`v1`]: the `chat.v1` session: handshake, requests, acks, receipts.

mod commit;
mod v1;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Headers, Method, Request, Response, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, WebSocketRequestResponsePair,
};

use super::hop::{self, RawStub};
use super::store::{NewEntry, Store};
use super::{d1, json_error, now_ms, query_pairs, query_param, random_u64, USER_BINDING};
use crate::history::{self, page_json, PageQuery, BATCH_BYTES, BATCH_ROWS};
use crate::inbox::Inbox;
use crate::limits::Limits;
use crate::message::{chat_body, new_id, Kind};
use crate::metrics::{self, incr, Counter};
use crate::protocol::{legacy, parse_chat, Chat, Frame, Refusal, Reply};
use crate::ratelimit::Bucket;
use crate::relay::{Delivery, Outcome, Receipt, Typing, DUP_HEADER, SEQ_HEADER};
use crate::user::UserId;

/// Tags of sockets speaking the legacy protocol and `chat.v1`.
const LEGACY: &str = "legacy";
const V1: &str = "v1";
/// Log entries kept after they are delivered and archived (the resume window).
const KEEP_ENTRIES: u64 = 1000;
/// A device not seen for this long no longer holds entries in the log.
const DEVICE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long a send refused for too many in flight should wait.
const BUSY_RETRY_MS: u64 = 100;
/// How long a send's client id and a derived message id are remembered.
const IDEMPOTENCY_MS: u64 = 24 * 3600 * 1000;
/// Stubs cached per peer; one stub per peer keeps a sender's messages in order.
const MAX_STUBS: usize = 256;

/// What a socket remembers across hibernation.
#[derive(Serialize, Deserialize)]
struct Attachment {
    uid: String,
    /// Set for `chat.v1` sockets: the device, and the token's expiry (s).
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    exp: u64,
}

/// Where an appended entry ended up.
#[derive(Clone, Copy, Debug)]
struct Stored {
    seq: u64,
    /// Written to at least one open socket.
    pushed: bool,
}

/// An entry waiting for the next group write, and the handler waiting for it.
struct Waiting {
    entry: NewEntry,
    done: oneshot::Sender<Result<Stored, String>>,
}

/// The object's user and log state, loaded on the first event after a wake.
struct Life {
    owner: UserId,
    inbox: Inbox,
    /// v1 devices: how far each acknowledged, and whether that is unsaved.
    devices: HashMap<String, Device>,
}

#[derive(Clone, Copy, Debug)]
struct Device {
    acked: u64,
    seen: u64,
    dirty: bool,
}

#[durable_object]
pub struct UserObject {
    state: State,
    env: Env,
    store: Store,
    life: RefCell<Option<Life>>,
    /// Entries appended since the last group write.
    pending: RefCell<Vec<Waiting>>,
    commit_scheduled: Cell<bool>,
    /// Set for one timer tick after a write; entries appended meanwhile wait
    /// for the group write. Shared with the task that clears it.
    cooling: Rc<Cell<bool>>,
    stubs: RefCell<HashMap<UserId, RawStub>>,
    /// Client message ids of v1 sends waiting for the recipient's answer.
    inflight: RefCell<std::collections::HashSet<String>>,
    /// Sends of any protocol waiting for the recipient's answer: each holds
    /// its message in memory, so their number is bounded (`INFLIGHT_SENDS`).
    sends_waiting: Cell<usize>,
    /// Shared with the task that sets the alarm, which clears it on failure.
    alarm_armed: Rc<Cell<bool>>,
    archive_failures: Cell<u32>,
    /// One archive pass at a time (alarm and history request may race).
    archiving: Mutex<()>,
    archive_delay_ms: u64,
    archive_retry_ms: u64,
    limits: Limits,
    /// The user's send rate over all their sockets.
    bucket: RefCell<Option<Bucket>>,
    /// `FAULTS=1` (tests only): a frame `__panic` panics inside the handler.
    faults: bool,
}

impl DurableObject for UserObject {
    fn new(state: State, env: Env) -> Self {
        // The runtime answers heartbeats itself, without waking the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new(legacy::HEARTBEAT, legacy::HEARTBEAT) {
            state.set_websocket_auto_response(&pair);
        }
        let store = match Store::open(&state.storage()) {
            Ok(s) => s,
            // Without its log the object can do nothing useful; fail loudly.
            Err(e) => panic!("cannot open the user log: {e}"),
        };
        let var_ms =
            |name: &str, default: u64| env.var(name).ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(default);
        let archive_delay_ms = var_ms("ARCHIVE_DELAY_MS", history::ARCHIVE_DELAY_MS);
        let archive_retry_ms = var_ms("ARCHIVE_RETRY_MS", 1000);
        // The entry refuses every request while a limit var is invalid, so a
        // default here only ever serves hops already under way.
        let limits = super::limits(&env).unwrap_or_default();
        let faults = env.var("FAULTS").is_ok_and(|v| v.to_string() == "1");
        UserObject {
            state,
            env,
            store,
            life: RefCell::new(None),
            pending: RefCell::new(Vec::new()),
            commit_scheduled: Cell::new(false),
            cooling: Rc::new(Cell::new(false)),
            stubs: RefCell::new(HashMap::new()),
            inflight: RefCell::new(Default::default()),
            sends_waiting: Cell::new(0),
            alarm_armed: Rc::new(Cell::new(false)),
            archive_failures: Cell::new(0),
            archiving: Mutex::new(()),
            archive_delay_ms,
            archive_retry_ms,
            limits,
            bucket: RefCell::new(None),
            faults,
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        let raw = query_pairs(&req);
        let pairs = || raw.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let param = |name: &str| query_param(&raw, name);
        let uid = param("uid").and_then(|v| UserId::parse(&v).ok());
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/deliver") => self.on_deliver(req, Delivery::from_query(pairs())).await,
            (Method::Post, "/receipt") => self.on_receipt(Receipt::from_query(pairs())),
            (Method::Post, "/typing") => self.on_typing(Typing::from_query(pairs())),
            (Method::Get, "/connect") => match (uid, param("device")) {
                (Some(uid), None) => self.on_connect(&uid),
                (Some(uid), Some(device)) => {
                    let since = param("since").and_then(|v| v.parse().ok());
                    let exp = param("exp").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
                    self.on_connect_v1(&uid, &device, since, exp)
                }
                (None, _) => json_error(400, "uid required"),
            },
            (Method::Post, "/send") => {
                let time = param("time").and_then(|v| v.parse().ok());
                match (uid, param("id"), time) {
                    (Some(uid), Some(id), Some(time)) => self.on_api_send(req, &uid, &id, time, param("cmid")).await,
                    _ => json_error(400, "uid, id and time required"),
                }
            }
            (Method::Get, path @ ("/history" | "/v1/history" | "/conversations")) => {
                let Some(uid) = uid else { return json_error(400, "uid required") };
                let q = match PageQuery::parse_within(pairs(), self.limits.history_page) {
                    Ok(q) => q,
                    Err(bad) => {
                        if bad.param == "limit" {
                            incr(Counter::RefusedPage);
                        }
                        return json_error(400, &format!("{}: {}", bad.param, bad.problem));
                    }
                };
                match path {
                    "/history" => self.on_history(&uid, &q).await,
                    "/v1/history" => self.on_v1_history(&uid, &q).await,
                    _ => self.on_conversations(&uid, &q),
                }
            }
            _ => json_error(404, "no such route"),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        incr(Counter::DoWsMessages);
        let text = match message {
            WebSocketIncomingMessage::String(t) => t,
            WebSocketIncomingMessage::Binary(_) => return send_reply(&ws, &Reply::Refused(Refusal::Format)),
        };
        let att = attachment(&ws)?;
        let owner = UserId::parse(&att.uid).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.load(&owner)?;
        if self.faults && text == "__panic" {
            panic!("fault injected by a test");
        }
        if let Some(device) = att.device {
            return self.on_v1_frame(&ws, &owner, &device, att.exp, &text).await;
        }
        let reply = match legacy::parse(&text, self.limits.frame_bytes) {
            Ok(Frame::Heartbeat) => Reply::Heartbeat,
            Ok(Frame::Chat(chat)) if chat.from != owner => Reply::Refused(Refusal::NotYou),
            Ok(Frame::Chat(chat)) => match self.admit_send() {
                Err(r) => Reply::Refused(r),
                Ok(()) => {
                    let id = new_id(now_ms(), random_u64());
                    match self.send_chat(&owner, chat, &id, now_ms(), None).await {
                        Ok(_) => Reply::Stored,
                        Err(r) => Reply::Refused(r),
                    }
                }
            },
            // The legacy parser makes no v1 frames.
            Ok(_) => Reply::Refused(Refusal::Format),
            Err(r) => {
                if r == Refusal::TooLarge {
                    incr(Counter::RefusedFrame);
                }
                Reply::Refused(r)
            }
        };
        send_reply(&ws, &reply)
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        // Finish the closing handshake; 1005/1006 are not codes one may send.
        let code = if code == 1005 || code == 1006 { 1000 } else { code as u16 };
        let _ = ws.close(Some(code), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        // Its queued entries stay queued; nothing to undo.
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        incr(Counter::DoAlarms);
        self.alarm_armed.set(false);
        if self.load_stored()?.is_none() {
            return Response::empty();
        }
        match self.archive().await {
            Ok(()) => self.archive_failures.set(0),
            Err(e) => {
                let attempt = self.archive_failures.get();
                self.archive_failures.set(attempt + 1);
                worker::console_error!("history archive failed (attempt {}): {}", attempt + 1, e);
                self.arm_alarm(history::retry_delay_ms(self.archive_retry_ms, attempt)).await?;
            }
        }
        Response::empty()
    }
}

fn attachment_v1(uid: &UserId, device: &str, exp: u64) -> Attachment {
    Attachment { uid: uid.to_string(), device: Some(device.to_owned()), exp }
}

fn attachment(ws: &WebSocket) -> worker::Result<Attachment> {
    ws.deserialize_attachment()?.ok_or_else(|| worker::Error::RustError("socket without attachment".into()))
}

fn send_reply(ws: &WebSocket, reply: &Reply<'_>) -> worker::Result<()> {
    send(ws, legacy::encode(reply))
}

fn send(ws: &WebSocket, text: &str) -> worker::Result<()> {
    incr(Counter::FramesOut);
    ws.send_with_str(text)
}

impl UserObject {
    /// Loads the log state for `uid` if this is the first event since a wake.
    fn load(&self, uid: &UserId) -> worker::Result<()> {
        if self.life.borrow().is_some() {
            return Ok(());
        }
        let restored = self.store.restore()?;
        match restored.owner {
            Some(owner) if owner != *uid => {
                return Err(worker::Error::RustError(format!("object of {owner} asked to serve {uid}")))
            }
            Some(_) => {}
            None => self.store.set_owner(uid)?,
        }
        let devices = self.restore_devices()?;
        *self.life.borrow_mut() = Some(Life { owner: uid.clone(), inbox: restored.inbox, devices });
        Ok(())
    }

    fn restore_devices(&self) -> worker::Result<HashMap<String, Device>> {
        Ok(self
            .store
            .devices()?
            .into_iter()
            .map(|(d, acked, seen)| (d, Device { acked, seen, dirty: false }))
            .collect())
    }

    /// Loads the log state without a request to name the user (alarms).
    fn load_stored(&self) -> worker::Result<Option<UserId>> {
        if let Some(life) = self.life.borrow().as_ref() {
            return Ok(Some(life.owner.clone()));
        }
        let restored = self.store.restore()?;
        let Some(owner) = restored.owner else { return Ok(None) };
        let devices = self.restore_devices()?;
        *self.life.borrow_mut() = Some(Life { owner: owner.clone(), inbox: restored.inbox, devices });
        Ok(Some(owner))
    }

    /// Takes a token from the user's send bucket.
    fn admit_send(&self) -> Result<(), Refusal> {
        let now = now_ms();
        let mut bucket = self.bucket.borrow_mut();
        let rate = self.limits.send_rate;
        let b = bucket.get_or_insert_with(|| Bucket::full(rate, now));
        b.take(rate, now).map_err(|retry_after_ms| {
            incr(Counter::RefusedRate);
            Refusal::RateLimited { retry_after_ms }
        })
    }

    fn owner(&self) -> worker::Result<UserId> {
        self.life
            .borrow()
            .as_ref()
            .map(|l| l.owner.clone())
            .ok_or_else(|| worker::Error::RustError("log used before it was loaded".into()))
    }

    fn inbox(&self) -> Inbox {
        self.life.borrow().as_ref().map(|l| l.inbox.clone()).unwrap_or_default()
    }

    fn set_inbox(&self, inbox: Inbox) {
        if let Some(life) = self.life.borrow_mut().as_mut() {
            life.inbox = inbox;
        }
    }

    /// A new socket: accept it for hibernation, then replay the queue into
    /// it before anything live (no await in between, so nothing can overtake).
    fn on_connect(&self, uid: &UserId) -> worker::Result<Response> {
        self.load(uid)?;
        if let Some(refused) = self.refuse_socket()? {
            return Ok(refused);
        }
        self.expire_queue()?;
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[LEGACY]);
        pair.server.serialize_attachment(Attachment { uid: uid.to_string(), device: None, exp: 0 })?;
        self.replay(&pair.server)?;
        Response::from_websocket(pair.client)
    }

    /// A new socket past `SOCKETS_PER_USER` is refused before the upgrade
    /// (429), rather than closing an old one: two clients over the bound
    /// would otherwise take turns closing each other.
    fn refuse_socket(&self) -> worker::Result<Option<Response>> {
        let open = self.state.get_websockets().len();
        if open < self.limits.sockets_per_user {
            return Ok(None);
        }
        incr(Counter::RefusedSockets);
        let message = format!("too many open sockets for this user (at most {})", self.limits.sockets_per_user);
        json_error(429, &message).map(Some)
    }

    /// Drops from the offline queue the entries no socket received within
    /// `QUEUE_TTL_S`. They stay in the log and in D1 history, and leave the
    /// log through the usual pruning; a v1 device that resumes from before
    /// them once they are pruned is told `recovered: false`.
    fn expire_queue(&self) -> worker::Result<()> {
        let mut inbox = self.inbox();
        let Some(first) = inbox.first_unsent() else { return Ok(()) };
        let cutoff = now_ms().saturating_sub(self.limits.queue_ttl_ms);
        if let Some((next, dropped)) = self.store.expire_queue(first, cutoff)? {
            metrics::add(Counter::QueueExpired, dropped);
            inbox.expire_queue(next);
            self.set_inbox(inbox);
        }
        Ok(())
    }

    /// Whether the offline queue is at `QUEUE_MAX`, once expired entries left
    /// it. Owed entries still waiting for the group write count too, or
    /// concurrent deliveries would all pass the check and overshoot it.
    fn queue_full(&self) -> worker::Result<bool> {
        let waiting = self.pending.borrow().iter().filter(|w| w.entry.kind.owed_to_owner()).count() as u64;
        let max = self.limits.queue_max;
        if !self.inbox().queue_at(max, waiting, false) {
            return Ok(false);
        }
        self.expire_queue()?;
        let full = self.inbox().queue_at(max, waiting, !self.state.get_websockets().is_empty());
        if full {
            incr(Counter::RefusedQueueFull);
        }
        Ok(full)
    }

    fn replay(&self, ws: &WebSocket) -> worker::Result<()> {
        let Some(first) = self.inbox().first_unsent() else { return Ok(()) };
        let mut last = None;
        let mut next_unsent = None;
        self.store.queued(first, |seq, body| {
            if send(ws, body).is_err() {
                next_unsent = Some(seq);
                return false;
            }
            last = Some(seq);
            true
        })?;
        if let Some(last) = last {
            self.store.mark_sent(first, last)?;
            self.replayed(first, last, next_unsent)?;
            self.want_archive();
        }
        Ok(())
    }

    /// The queue from `first` to `last` reached a socket; a rewound archive
    /// cursor is saved at once (see [`Inbox::replayed`]).
    fn replayed(&self, first: u64, last: u64, next_unsent: Option<u64>) -> worker::Result<()> {
        let mut inbox = self.inbox();
        if inbox.replayed(first, last, next_unsent) {
            self.store.set_archived(inbox.archived())?;
        }
        self.set_inbox(inbox);
        Ok(())
    }

    /// `POST /deliver`: another object (or the API) stores a message here.
    async fn on_deliver(&self, mut req: Request, delivery: Option<Delivery>) -> worker::Result<Response> {
        let body = req.text().await?;
        let Some(d) = delivery else { return answer(Outcome::Bad, None) };
        self.load(&d.owner)?;
        if d.dedup {
            if let Some((seq, pushed)) = self.store.seen(&d.id)? {
                let res = answer(Outcome::Stored { pushed }, Some(seq))?;
                res.headers().set(DUP_HEADER, "1")?;
                return Ok(res);
            }
        }
        if self.queue_full()? {
            return answer(Outcome::Full, None);
        }
        let entry = NewEntry {
            id: d.id,
            kind: d.kind,
            peer: d.peer,
            time_ms: d.time_ms,
            body,
            peer_state: None,
            cmid: None,
            dedup: d.dedup,
        };
        let stored = self.append(entry).await?;
        answer(Outcome::Stored { pushed: stored.pushed }, Some(stored.seq))
    }

    /// `POST /send`: the backend sends a chat on this user's behalf.
    async fn on_api_send(
        &self,
        mut req: Request,
        uid: &UserId,
        id: &str,
        time: u64,
        cmid: Option<String>,
    ) -> worker::Result<Response> {
        let body = req.text().await?;
        self.load(uid)?;
        if let Some(cmid) = &cmid {
            if self.store.sent_before(cmid)?.is_some() {
                return answer(Outcome::Stored { pushed: true }, None);
            }
        }
        let chat = serde_json::from_str(&body).map_err(|_| Refusal::Format).and_then(parse_chat);
        let result = match chat {
            Ok(chat) if chat.from == *uid => self.send_chat(uid, chat, id, time, cmid.as_deref()).await,
            Ok(_) => Err(Refusal::NotYou),
            Err(r) => Err(r),
        };
        let outcome = match result {
            Ok(_) => Outcome::Stored { pushed: true },
            Err(Refusal::Unavailable | Refusal::RateLimited { .. }) => Outcome::Unavailable,
            Err(Refusal::RecipientFull) => Outcome::Full,
            Err(_) => Outcome::Bad,
        };
        answer(outcome, None)
    }

    /// Stores a chat in the recipient's log (through their object), then in
    /// the sender's own log; returns the seq of the sender's entry. `Ok`
    /// means the recipient's copy is durable. With a client message id the
    /// message id is derived from it, so the recipient stores a retry once.
    async fn send_chat(
        &self,
        owner: &UserId,
        chat: Chat,
        id: &str,
        time: u64,
        cmid: Option<&str>,
    ) -> Result<u64, Refusal> {
        let body = chat_body(&chat.from, &chat.to, chat.fields, id, time);
        let cmid = cmid.map(str::to_owned);
        let dedup = cmid.is_some();
        if chat.to == *owner {
            if self.queue_full().map_err(|_| Refusal::Unavailable)? {
                return Err(Refusal::RecipientFull);
            }
            let entry = NewEntry {
                id: id.to_owned(),
                kind: Kind::Received,
                peer: Some(owner.clone()),
                time_ms: time,
                body,
                peer_state: None,
                cmid,
                dedup,
            };
            return self.append(entry).await.map(|s| s.seq).map_err(|_| Refusal::Unavailable);
        }
        let delivery = Delivery {
            owner: chat.to.clone(),
            kind: Kind::Received,
            id: id.to_owned(),
            time_ms: time,
            peer: Some(owner.clone()),
            dedup,
        };
        let url = format!("https://user/deliver?{}", delivery.to_query());
        let stub = self.stub(&chat.to).map_err(|_| Refusal::Unavailable)?;
        if self.sends_waiting.get() >= self.limits.inflight_sends {
            incr(Counter::RefusedBusy);
            return Err(Refusal::RateLimited { retry_after_ms: BUSY_RETRY_MS });
        }
        self.sends_waiting.set(self.sends_waiting.get() + 1);
        let answer = hop::post(&stub, &url, &body).await;
        self.sends_waiting.set(self.sends_waiting.get() - 1);
        let (peer_seq, pushed) = match answer.map(|a| (a.outcome, a.seq)) {
            Ok((Outcome::Stored { pushed }, seq)) => (seq.unwrap_or(0), pushed),
            Ok((Outcome::Full, _)) => return Err(Refusal::RecipientFull),
            _ => {
                // A broken stub stays broken; the next send gets a fresh one.
                self.stubs.borrow_mut().remove(&chat.to);
                return Err(Refusal::Unavailable);
            }
        };
        let entry = NewEntry {
            id: id.to_owned(),
            kind: Kind::Sent,
            peer: Some(chat.to),
            time_ms: time,
            body,
            peer_state: Some((peer_seq, pushed)),
            cmid,
            dedup: false,
        };
        match self.append(entry).await {
            Ok(stored) => Ok(stored.seq),
            Err(e) => {
                // The recipient has it, which is what `ok` promises; only this
                // user's own log lacks the copy.
                worker::console_error!("could not keep the sender's copy: {}", e);
                Ok(0)
            }
        }
    }

    fn stub(&self, peer: &UserId) -> worker::Result<RawStub> {
        if let Some(s) = self.stubs.borrow().get(peer) {
            return Ok(s.clone());
        }
        let stub = hop::stub(&self.env.durable_object(USER_BINDING)?, peer.as_str())?;
        let mut stubs = self.stubs.borrow_mut();
        if stubs.len() >= MAX_STUBS {
            stubs.clear();
        }
        stubs.insert(peer.clone(), stub.clone());
        Ok(stub)
    }

    /// `GET /history`: archive what is pending first, so a page always holds
    /// everything this user's log had when it was asked for.
    async fn on_history(&self, uid: &UserId, q: &PageQuery) -> worker::Result<Response> {
        self.load(uid)?;
        let rows = match self.archive().await {
            Ok(()) => d1::page(&self.env, uid, q).await,
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => {
                let headers = Headers::new();
                headers.set("content-type", "application/json")?;
                Ok(Response::ok(page_json(&rows, q.limit))?.with_headers(headers))
            }
            Err(e) => self.history_unavailable(e),
        }
    }

    /// The answer when D1 could not be written or read: the archive is
    /// scheduled again, and the client is told to retry.
    fn history_unavailable(&self, e: worker::Error) -> worker::Result<Response> {
        worker::console_error!("history unavailable: {}", e);
        self.want_archive();
        json_error(503, "history is temporarily unavailable; retry")
    }

    /// Writes the log to D1 up to its head, batch by batch, then prunes.
    async fn archive(&self) -> worker::Result<()> {
        let _one_at_a_time = self.archiving.lock().await;
        let Some(owner) = self.load_stored()? else { return Ok(()) };
        while let Some(batch) = self.inbox().to_archive(BATCH_ROWS) {
            let Some((rows, upto)) = self.store.archive_batch(batch.from, batch.to, BATCH_BYTES)? else { break };
            d1::archive(&self.env, &owner, &rows).await?;
            let mut inbox = self.inbox();
            if inbox.archived_upto(batch, upto) {
                self.store.set_archived(inbox.archived())?;
            }
            self.set_inbox(inbox);
        }
        self.save_devices()?;
        self.expire_queue()?;
        let mut inbox = self.inbox();
        let below = inbox.prunable_below(KEEP_ENTRIES, self.limits.log_cap, self.devices_acked());
        self.store.prune_below(below)?;
        // The cap may take queued entries (the queue can outgrow the log by
        // own sent chats in between): the queue then starts after them.
        if inbox.queue_pruned(below) {
            inbox.expire_queue(self.store.first_unsent_from(below)?);
            self.set_inbox(inbox);
        }
        self.store.expire_idempotency(now_ms().saturating_sub(IDEMPOTENCY_MS))?;
        Ok(())
    }

    /// Schedules an archive pass unless one is already scheduled. The alarm
    /// is set in the background so the message path never waits for it.
    fn want_archive(&self) {
        if self.alarm_armed.replace(true) {
            return;
        }
        let storage = self.state.storage();
        let delay = self.archive_delay_ms as i64;
        let armed = Rc::clone(&self.alarm_armed);
        worker::wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = storage.set_alarm(delay).await {
                armed.set(false);
                worker::console_error!("could not schedule history archive: {}", e);
            }
        });
    }

    async fn arm_alarm(&self, delay_ms: u64) -> worker::Result<()> {
        self.alarm_armed.set(true);
        self.state.storage().set_alarm(delay_ms as i64).await
    }
}

/// An empty response whose status (and `x-seq`) is the whole answer.
fn answer(outcome: Outcome, seq: Option<u64>) -> worker::Result<Response> {
    let res = Response::empty()?.with_status(outcome.status());
    match seq {
        Some(seq) => {
            let headers = Headers::new();
            headers.set(SEQ_HEADER, &seq.to_string())?;
            Ok(res.with_headers(headers))
        }
        None => Ok(res),
    }
}
