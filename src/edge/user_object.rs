//! The per-user Durable Object: a thin adapter from platform events
//! (upgrade, socket message, hop request, alarm) to the core, and from the
//! core's decisions to SQLite writes and socket sends.
//!
//! It never holds a `RefCell` borrow across an `.await`: each handler reads
//! what it needs, awaits, then borrows again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use std::time::Duration;

use futures::channel::oneshot;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Delay, DurableObject, Env, Headers, Method, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

use super::hop::{self, RawStub};
use super::store::{NewEntry, Store};
use super::{d1, json_error, now_ms, random_u64, USER_BINDING};
use crate::history::{self, page_json, PageQuery, BATCH_BYTES, BATCH_ROWS};
use crate::inbox::Inbox;
use crate::message::{chat_body, new_id, Kind};
use crate::metrics::{add, incr, Counter};
use crate::protocol::{legacy, parse_chat, Chat, Frame, Refusal, Reply};
use crate::relay::{Delivery, SEQ_HEADER, STATUS_BAD, STATUS_PUSHED, STATUS_QUEUED};
use crate::user::UserId;

/// Tag of sockets speaking the legacy protocol.
const LEGACY: &str = "legacy";
/// Log entries kept after they are delivered and archived (the resume window).
const KEEP_ENTRIES: u64 = 1000;
/// Stubs cached per peer; one stub per peer keeps a sender's messages in order.
const MAX_STUBS: usize = 256;

/// What a socket remembers across hibernation.
#[derive(Serialize, Deserialize)]
struct Attachment {
    uid: String,
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
    /// Shared with the task that sets the alarm, which clears it on failure.
    alarm_armed: Rc<Cell<bool>>,
    archive_failures: Cell<u32>,
    /// One archive pass at a time (alarm and history request may race).
    archiving: Mutex<()>,
    archive_delay_ms: u64,
    archive_retry_ms: u64,
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
        let var_ms = |name: &str, default: u64| {
            env.var(name).ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(default)
        };
        let archive_delay_ms = var_ms("ARCHIVE_DELAY_MS", history::ARCHIVE_DELAY_MS);
        let archive_retry_ms = var_ms("ARCHIVE_RETRY_MS", 1000);
        UserObject {
            state,
            env,
            store,
            life: RefCell::new(None),
            pending: RefCell::new(Vec::new()),
            commit_scheduled: Cell::new(false),
            cooling: Rc::new(Cell::new(false)),
            stubs: RefCell::new(HashMap::new()),
            alarm_armed: Rc::new(Cell::new(false)),
            archive_failures: Cell::new(0),
            archiving: Mutex::new(()),
            archive_delay_ms,
            archive_retry_ms,
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        let url = req.url()?;
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let pairs = || pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let uid = pairs().find(|(k, _)| *k == "uid").and_then(|(_, v)| UserId::parse(v).ok());
        match (req.method(), url.path()) {
            (Method::Post, "/deliver") => self.on_deliver(req, Delivery::from_query(pairs())).await,
            (Method::Get, "/connect") => match uid {
                Some(uid) => self.on_connect(&uid),
                None => json_error(400, "uid required"),
            },
            (Method::Post, "/send") => {
                let id = pairs().find(|(k, _)| *k == "id").map(|(_, v)| v.to_owned());
                let time = pairs().find(|(k, _)| *k == "time").and_then(|(_, v)| v.parse().ok());
                match (uid, id, time) {
                    (Some(uid), Some(id), Some(time)) => self.on_api_send(req, &uid, &id, time).await,
                    _ => json_error(400, "uid, id and time required"),
                }
            }
            (Method::Get, "/history") => match (uid, PageQuery::parse(pairs())) {
                (Some(uid), Ok(q)) => self.on_history(&uid, &q).await,
                (None, _) => json_error(400, "uid required"),
                (_, Err(bad)) => json_error(400, &format!("{}: {}", bad.param, bad.problem)),
            },
            _ => json_error(404, "no such route"),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        incr(Counter::DoWsMessages);
        let text = match message {
            WebSocketIncomingMessage::String(t) => t,
            WebSocketIncomingMessage::Binary(_) => return send_reply(&ws, &Reply::Refused(Refusal::Format)),
        };
        let owner = self.socket_owner(&ws)?;
        let reply = match legacy::parse(&text) {
            Ok(Frame::Heartbeat) => Reply::Heartbeat,
            Ok(Frame::Chat(chat)) if chat.from != owner => Reply::Refused(Refusal::NotYou),
            Ok(Frame::Chat(chat)) => {
                let id = new_id(now_ms(), random_u64());
                match self.send_chat(&owner, chat, &id, now_ms()).await {
                    Ok(()) => Reply::Stored,
                    Err(r) => Reply::Refused(r),
                }
            }
            Err(r) => Reply::Refused(r),
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
        *self.life.borrow_mut() = Some(Life { owner: uid.clone(), inbox: restored.inbox });
        Ok(())
    }

    /// Loads the log state without a request to name the user (alarms).
    fn load_stored(&self) -> worker::Result<Option<UserId>> {
        if let Some(life) = self.life.borrow().as_ref() {
            return Ok(Some(life.owner.clone()));
        }
        let restored = self.store.restore()?;
        let Some(owner) = restored.owner else { return Ok(None) };
        *self.life.borrow_mut() = Some(Life { owner: owner.clone(), inbox: restored.inbox });
        Ok(Some(owner))
    }

    fn socket_owner(&self, ws: &WebSocket) -> worker::Result<UserId> {
        if let Some(life) = self.life.borrow().as_ref() {
            return Ok(life.owner.clone());
        }
        let att: Attachment = ws
            .deserialize_attachment()?
            .ok_or_else(|| worker::Error::RustError("socket without attachment".into()))?;
        let uid = UserId::parse(&att.uid).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.load(&uid)?;
        Ok(uid)
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
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[LEGACY]);
        pair.server.serialize_attachment(Attachment { uid: uid.to_string() })?;
        self.replay(&pair.server)?;
        Response::from_websocket(pair.client)
    }

    fn replay(&self, ws: &WebSocket) -> worker::Result<()> {
        let mut inbox = self.inbox();
        let Some(first) = inbox.first_unsent() else { return Ok(()) };
        let mut last = None;
        let mut next_unsent = None;
        for (seq, body) in self.store.queued(first)? {
            if send(ws, &body).is_err() {
                next_unsent = Some(seq);
                break;
            }
            last = Some(seq);
        }
        if let Some(last) = last {
            self.store.mark_sent(first, last)?;
            inbox.replayed(first, last, next_unsent);
            self.set_inbox(inbox);
            self.want_archive();
        }
        Ok(())
    }

    /// Appends an entry to the log; resolves once it is written (and, if
    /// nothing older is queued, pushed to the open sockets).
    ///
    /// Group commit: every event that writes costs the runtime a commit, which
    /// is most of the price of a message. An entry that finds the log idle is
    /// written at once; entries that arrive within the next timer tick share
    /// one later write. Nobody is answered before the write holding their entry,
    /// and entries are written in the order they were appended.
    async fn append(&self, entry: NewEntry) -> worker::Result<Stored> {
        if !self.cooling.get() && self.pending.borrow().is_empty() {
            self.cooling.set(true);
            let cooling = Rc::clone(&self.cooling);
            worker::wasm_bindgen_futures::spawn_local(async move {
                Delay::from(Duration::ZERO).await;
                cooling.set(false);
            });
            let (done, stored) = oneshot::channel();
            self.commit(vec![Waiting { entry, done }]);
            return settle(stored.await);
        }
        let (done, stored) = oneshot::channel();
        self.pending.borrow_mut().push(Waiting { entry, done });
        if !self.commit_scheduled.replace(true) {
            Delay::from(Duration::ZERO).await;
            self.commit_scheduled.set(false);
            let batch = std::mem::take(&mut *self.pending.borrow_mut());
            self.commit(batch);
        }
        settle(stored.await)
    }

    fn commit(&self, batch: Vec<Waiting>) {
        match self.write_batch(&batch) {
            Ok(stored) => {
                for (w, s) in batch.into_iter().zip(stored) {
                    let _ = w.done.send(Ok(s));
                }
            }
            Err(e) => {
                // Reload from storage on the next event rather than trust
                // in-memory state a failed write may have left behind.
                *self.life.borrow_mut() = None;
                for w in batch {
                    let _ = w.done.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Writes a batch in one statement, then pushes the owed entries in order.
    /// Pushes come after the write, so the output gate holds them until it is durable.
    fn write_batch(&self, batch: &[Waiting]) -> worker::Result<Vec<Stored>> {
        let owed = batch.iter().any(|w| w.entry.kind.owed_to_owner());
        let sockets = if owed { self.state.get_websockets_with_tag(LEGACY) } else { Vec::new() };
        let mut inbox = self.inbox();
        let owner = self.owner()?;
        let admitted: Vec<_> = batch.iter().map(|w| inbox.admit(w.entry.kind, sockets.len())).collect();
        let rows: Vec<_> = batch
            .iter()
            .zip(&admitted)
            .map(|(w, a)| (a.seq, &w.entry, a.push_now || !w.entry.kind.owed_to_owner()))
            .collect();
        self.store.append(&owner, &rows)?;
        add(Counter::MessagesStored, batch.iter().filter(|w| w.entry.kind.owed_to_owner()).count() as u64);
        let mut stored = Vec::with_capacity(batch.len());
        let mut failed_from = None;
        for (w, a) in batch.iter().zip(&admitted) {
            let mut pushed = false;
            if a.push_now && failed_from.is_none() {
                for ws in &sockets {
                    pushed |= send(ws, &w.entry.body).is_ok();
                }
                if !pushed {
                    failed_from = Some(a.seq);
                }
            }
            stored.push(Stored { seq: a.seq, pushed });
        }
        if let Some(from) = failed_from {
            // No socket took it: it and everything after it stay queued, in order.
            self.store.mark_unsent(from, inbox.head())?;
            inbox.push_failed(from);
        }
        self.set_inbox(inbox);
        self.want_archive();
        Ok(stored)
    }

    /// `POST /deliver`: another object (or the API) stores a message here.
    async fn on_deliver(&self, mut req: Request, delivery: Option<Delivery>) -> worker::Result<Response> {
        let body = req.text().await?;
        let Some(d) = delivery else { return status(STATUS_BAD, None) };
        self.load(&d.owner)?;
        let entry = NewEntry { id: d.id, kind: d.kind, peer: d.peer, time_ms: d.time_ms, body, peer_state: None };
        let stored = self.append(entry).await?;
        status(if stored.pushed { STATUS_PUSHED } else { STATUS_QUEUED }, Some(stored.seq))
    }

    /// `POST /send`: the backend sends a chat on this user's behalf.
    async fn on_api_send(&self, mut req: Request, uid: &UserId, id: &str, time: u64) -> worker::Result<Response> {
        let body = req.text().await?;
        self.load(uid)?;
        let chat = serde_json::from_str(&body).map_err(|_| Refusal::Format).and_then(parse_chat);
        let result = match chat {
            Ok(chat) if chat.from == *uid => self.send_chat(uid, chat, id, time).await,
            Ok(_) => Err(Refusal::NotYou),
            Err(r) => Err(r),
        };
        match result {
            Ok(()) => status(STATUS_PUSHED, None),
            Err(Refusal::Unavailable) => status(503, None),
            Err(_) => status(STATUS_BAD, None),
        }
    }

    /// Stores a chat in the recipient's log (through their object), then in
    /// the sender's own log. `Ok` means the recipient's copy is durable.
    async fn send_chat(&self, owner: &UserId, chat: Chat, id: &str, time: u64) -> Result<(), Refusal> {
        let body = chat_body(&chat.from, &chat.to, chat.fields, id, time);
        if chat.to == *owner {
            let entry = NewEntry { id: id.to_owned(), kind: Kind::Received, peer: Some(owner.clone()), time_ms: time, body, peer_state: None };
            return self.append(entry).await.map(|_| ()).map_err(|_| Refusal::Unavailable);
        }
        let delivery = Delivery { owner: chat.to.clone(), kind: Kind::Received, id: id.to_owned(), time_ms: time, peer: Some(owner.clone()) };
        let url = format!("https://user/deliver?{}", delivery.to_query());
        let stub = self.stub(&chat.to).map_err(|_| Refusal::Unavailable)?;
        let answer = hop::post(&stub, &url, &body).await;
        let (peer_seq, pushed) = match answer {
            Ok(a) if a.status == STATUS_PUSHED || a.status == STATUS_QUEUED => (a.seq.unwrap_or(0), a.status == STATUS_PUSHED),
            _ => {
                // A broken stub stays broken; the next send gets a fresh one.
                self.stubs.borrow_mut().remove(&chat.to);
                return Err(Refusal::Unavailable);
            }
        };
        let entry = NewEntry { id: id.to_owned(), kind: Kind::Sent, peer: Some(chat.to), time_ms: time, body, peer_state: Some((peer_seq, pushed)) };
        if let Err(e) = self.append(entry).await {
            // The recipient has it, which is what `ok` promises; only this
            // user's own history lacks the copy.
            worker::console_error!("could not keep the sender's copy: {}", e);
        }
        Ok(())
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
            Err(e) => {
                worker::console_error!("history unavailable: {}", e);
                self.want_archive();
                json_error(503, "history is temporarily unavailable; retry")
            }
        }
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
        let below = self.inbox().prunable_below(KEEP_ENTRIES);
        self.store.prune_below(below)?;
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

fn settle(r: Result<Result<Stored, String>, oneshot::Canceled>) -> worker::Result<Stored> {
    match r {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(worker::Error::RustError(e)),
        Err(_) => Err(worker::Error::RustError("log write abandoned".into())),
    }
}

/// An empty response whose status (and `x-seq`) is the whole answer.
fn status(code: u16, seq: Option<u64>) -> worker::Result<Response> {
    let res = Response::empty()?.with_status(code);
    match seq {
        Some(seq) => {
            let headers = Headers::new();
            headers.set(SEQ_HEADER, &seq.to_string())?;
            Ok(res.with_headers(headers))
        }
        None => Ok(res),
    }
}
