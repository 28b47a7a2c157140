//! The per-user Durable Object: the platform side of a [`Mailbox`].
//!
//! Every hook has the same preamble: count the event, name the user (from the
//! request or the socket's attachment) and open the mailbox for them. Then it
//! makes one call into the core and executes what comes back: frames through
//! the sockets port, the hop to a peer's object, the group write's timer
//! tick, D1, the alarm. The only waits are here; every decision is in the core.
//!
//! No `RefCell` borrow is held across an `.await`: each step borrows the
//! mailbox for one synchronous call.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::join_all;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Delay, DurableObject, Env, Headers, Request, Response, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, WebSocketRequestResponsePair,
};

mod fanin_hop;

use super::hop::{self, RawStub};
use super::sql::DoSql;
use super::webhook::Webhook;
use super::{analytics, cold, d1, json, json_error, log, now_ms, random_u64, Rid, USER_BINDING, WRITER_BINDING};
use crate::archive::{shard_of, Handoff, Partitioning};
use crate::auth::token_expired;
use crate::group::calls;
use crate::history::{self, d1_part, merge, page_convs, page_json, PageQuery, PageRow, Shape};
use crate::internal::{
    Answer, ApiEdit, ApiSend, Archive, Delivery, Internal, Outcome, Receipt, Typing, V1Connect, View, Watch,
};
use crate::log::{Log, NewEntry, StoreError};
use crate::logs::Line;
use crate::mailbox::{
    self, ApiEditStep, ApiStep, Appended, Config, DeliverStep, Effect, Io, LegacyStep, Mailbox, Mode, Notice, SendPlan,
    Stored, V1Step, Waiter,
};
use crate::message::{new_id, Chat, Refusal};
use crate::metrics::{incr, Counter};
use crate::protocol::{self, legacy, v1, Reply};
use crate::ticket::Outstanding;
use crate::user::UserId;

/// Stubs cached per peer; one stub per peer keeps a sender's messages in order.
const MAX_STUBS: usize = 256;

/// What a socket remembers across hibernation.
#[derive(Serialize, Deserialize)]
struct Attachment {
    uid: String,
    /// Set for `chat.v1` sockets: the device.
    #[serde(default)]
    device: Option<String>,
    /// The token's expiry (s); 0 on sockets accepted before legacy sockets
    /// carried it.
    #[serde(default)]
    exp: u64,
}

/// Why the platform side could not finish an event. Logged once, where it
/// becomes an `unavailable` answer.
#[derive(Debug)]
enum Failure {
    /// The core refused (storage failed, or a routing bug).
    Core(mailbox::Error),
    /// A platform call failed (D1, a response, the socket).
    Platform(worker::Error),
    /// The group write holding an entry never answered (its handler died).
    Abandoned,
    /// A history writer did not confirm a hand-off.
    History(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Core(e) => e.fmt(f),
            Failure::Platform(e) => write!(f, "platform: {e}"),
            Failure::Abandoned => f.write_str("log write abandoned"),
            Failure::History(e) => write!(f, "history writer: {e}"),
        }
    }
}

impl From<mailbox::Error> for Failure {
    fn from(e: mailbox::Error) -> Failure {
        Failure::Core(e)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Failure {
        Failure::Platform(e)
    }
}

impl From<Failure> for worker::Error {
    fn from(f: Failure) -> worker::Error {
        match f {
            Failure::Platform(e) => e,
            other => worker::Error::RustError(other.to_string()),
        }
    }
}

/// The state shared with the tasks the object spawns (timer ticks, alarms,
/// notification hops).
struct Shared {
    log: Log<DoSql>,
    mailbox: RefCell<Mailbox>,
    /// Handlers waiting for the group write that holds their entry.
    waiters: RefCell<HashMap<Waiter, oneshot::Sender<Result<Stored, mailbox::Error>>>>,
    stubs: RefCell<HashMap<UserId, RawStub>>,
    writers: RefCell<HashMap<u32, RawStub>>,
    /// The earliest token expiry (s) among the open sockets; 0: not known
    /// yet (the object just woke), so the next send looks.
    earliest_exp: Cell<u64>,
    /// One push webhook call at a time (an alarm and a write may both start one).
    pushing: Mutex<()>,
    /// Socket tickets issued and not used yet (in memory: one restart and
    /// they are refused, never honoured twice).
    tickets: RefCell<Outstanding>,
    /// Hot recipients: this user's own rate ([`crate::fanin::Meter`]), the peers
    /// whose shards this user's sends go through, and those shards' stubs.
    fanin: fanin_hop::Fanin,
}

/// The sockets port over the runtime's hibernatable sockets. No message is
/// written to a socket whose token expired: it is closed with 4001 first,
/// at the first send once the earliest expiry is due, and the entry stays
/// queued for the next connection.
struct Sockets<'a> {
    state: &'a State,
    earliest_exp: &'a Cell<u64>,
}

impl Sockets<'_> {
    /// Closes the expired sockets once the earliest expiry is due.
    fn close_expired(&self) {
        if now_ms() / 1000 >= self.earliest_exp.get() {
            self.sweep();
        }
    }

    /// Closes every socket whose token expired; returns the earliest expiry
    /// (s) among the rest (0: none expires).
    fn sweep(&self) -> u64 {
        let now = now_ms();
        let mut earliest = u64::MAX;
        for ws in self.state.get_websockets() {
            let exp = ws.deserialize_attachment::<Attachment>().ok().flatten().map_or(0, |a| a.exp);
            if token_expired(exp, now) {
                let _ = ws.close(Some(v1::close::TOKEN_EXPIRED), Some("token expired"));
            } else if exp != 0 {
                earliest = earliest.min(exp);
            }
        }
        self.earliest_exp.set(earliest);
        if earliest == u64::MAX {
            0
        } else {
            earliest
        }
    }
}

fn tag(mode: Mode) -> &'static str {
    match mode {
        Mode::Legacy => "legacy",
        Mode::V1 => "v1",
    }
}

impl mailbox::Sockets for Sockets<'_> {
    type Socket = WebSocket;
    fn open(&self, mode: Mode) -> Vec<WebSocket> {
        self.state.get_websockets_with_tag(tag(mode))
    }
    fn count(&self) -> usize {
        self.state.get_websockets().len()
    }
    fn send(&self, socket: &WebSocket, text: &str) -> bool {
        // A socket closed just now refuses the send: the entry stays queued.
        self.close_expired();
        socket.send_with_str(text).is_ok()
    }
}

#[durable_object]
pub struct UserObject {
    state: State,
    env: Env,
    shared: Rc<Shared>,
    /// One archive pass at a time (alarm and history request may race).
    archiving: Mutex<()>,
    /// `FAULTS=1` (tests only): a frame `__panic` panics inside the handler.
    faults: bool,
    /// The push webhook, when configured.
    webhook: Option<Rc<Webhook>>,
}

impl DurableObject for UserObject {
    fn new(state: State, env: Env) -> Self {
        // The runtime answers heartbeats itself, without waking the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new(legacy::HEARTBEAT, legacy::HEARTBEAT) {
            state.set_websocket_auto_response(&pair);
        }
        let log = match Log::open(DoSql(state.storage().sql())) {
            Ok(log) => log,
            // Without its log the object can do nothing useful; fail loudly.
            Err(e) => panic!("cannot open the user log: {e}"),
        };
        let var_ms =
            |name: &str, default: u64| env.var(name).ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(default);
        let mut config = Config::new(
            // The entry refuses every request while a limit var is invalid, so
            // a default here only ever serves hops already under way.
            super::limits(&env).unwrap_or_default(),
            var_ms("ARCHIVE_DELAY_MS", history::ARCHIVE_DELAY_MS),
            var_ms("ARCHIVE_RETRY_MS", 1000),
        );
        config.shards = d1::shards(&env);
        let webhook = Webhook::from_env(&env).map(Rc::new);
        config.push = webhook.as_ref().map(|w| w.config);
        let faults = env.var("FAULTS").is_ok_and(|v| v.to_string() == "1");
        let shared = Rc::new(Shared {
            log,
            mailbox: RefCell::new(Mailbox::new(config)),
            waiters: RefCell::new(HashMap::new()),
            stubs: RefCell::new(HashMap::new()),
            writers: RefCell::new(HashMap::new()),
            earliest_exp: Cell::new(0),
            pushing: Mutex::new(()),
            tickets: RefCell::default(),
            fanin: fanin_hop::Fanin::new(&env),
        });
        UserObject { state, env, shared, archiving: Mutex::new(()), faults, webhook }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        analytics::flush(&self.env);
        let rid = Rid::new();
        let request = match Internal::parse(&req.inner().url()) {
            Ok(request) => request,
            Err(e) => {
                log(self.line(rid, "bad_internal_request").err(&e));
                return answer(Answer::of(Outcome::Bad));
            }
        };
        self.open(request.owner())?;
        let body = if request.has_body() { req.text().await? } else { String::new() };
        if matches!(request, Internal::Read { .. }) {
            if let Err(retry_after_ms) = self.shared.mailbox.borrow_mut().admit_read(now_ms()) {
                return rate_limited(retry_after_ms);
            }
        }
        if let Internal::Connect { ticket: Some(nonce), .. } = &request {
            // The ticket's one use, whichever isolate the upgrade came through.
            if let Err(e) = self.shared.tickets.borrow_mut().redeem(nonce, now_ms()) {
                return json_error(401, e.message());
            }
        }
        match request {
            Internal::Deliver(d) => self.on_deliver(d, body, rid).await,
            Internal::InboxBatch { owner } => self.on_inbox_batch(&owner, &body, rid).await,
            Internal::Send(s) => self.on_api_send(s, &body, rid).await,
            Internal::Receipt(r) => self.on_receipt(&r),
            Internal::Typing(t) => self.on_typing(&t),
            Internal::Connect { uid, exp, v1: None, .. } => self.on_connect(&uid, exp),
            Internal::Connect { uid, exp, v1: Some(c), .. } => self.on_connect_v1(&uid, exp, &c),
            Internal::Ticket { uid, exp } => {
                super::ticket::issue(&self.env, &self.shared.tickets, &crate::auth::Verified { user: uid, exp })
            }
            Internal::Read { uid, view: View::Legacy, page } => self.on_history(&uid, &page, rid).await,
            Internal::Read { uid, view: View::V1, page } => self.on_v1_history(&uid, &page, rid).await,
            Internal::Read { uid, view: View::Conversations, page } => self.on_conversations(&uid, &page, rid).await,
            Internal::Blocks { uid, op } => {
                let (status, body) = self.step(|mb, io| mb.blocks_request(io, &uid, op))?;
                json(status, &body)
            }
            Internal::Watch(w) => answer(Answer::presence(self.step(|mb, io| mb.watch(io, &w))?)),
            Internal::Presence(n) => {
                self.step(|mb, io| mb.presence_notice(io, &n))?;
                answer(Answer::of(Outcome::Done))
            }
            Internal::Settings { uid, hide_presence, group_adds } => {
                let change = v1::SettingsChange { hide_presence, group_adds };
                json(200, &self.step(|mb, io| mb.settings_request(io, &uid, change))?)
            }
            Internal::MayAdd { owner, by } => {
                let yes = self.step(|mb, io| mb.may_add_to_group(io, &owner, &by))?;
                answer(Answer::of(if yes { Outcome::Done } else { Outcome::Conflict }))
            }
            Internal::Edit(e) => self.on_api_edit(&e, &body, rid).await,
            Internal::GroupDeliver { owner } => {
                let delivery = match calls::parse_delivery(&owner, &body) {
                    Ok(d) => d,
                    Err(e) => {
                        log(self.line(rid, "bad_group_delivery").err(&e));
                        return answer(calls::hop_answer(None));
                    }
                };
                answer(calls::hop_answer(self.step(|mb, io| mb.group_delivery(io, &delivery))?))
            }
            Internal::GroupRead { owner, group, up_to } => {
                // `to_group` says whether the reader hides their presence.
                let call = calls::Call::Read { up_to, hidden: false };
                let request = calls::Request { group, by: crate::group::Actor::User(owner), call };
                match self.to_group(&request).await {
                    Ok((status, body)) => json(status, &body),
                    Err(e) => {
                        log(self.line(rid, "group_unavailable").err(&e));
                        json_error(503, "the group is temporarily unavailable; retry")
                    }
                }
            }
            Internal::GroupCall { owner } => self.on_group_call(&owner, &body, rid).await,
            Internal::Relay { .. } => {
                self.call(|mb, io| mb.relay(io, &body));
                answer(Answer::of(Outcome::Done))
            }
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        incr(Counter::DoWsMessages);
        analytics::flush(&self.env);
        let rid = Rid::new();
        let att: Attachment =
            ws.deserialize_attachment()?.ok_or_else(|| worker::Error::RustError("socket without attachment".into()))?;
        let text = match message {
            WebSocketIncomingMessage::String(t) => t,
            WebSocketIncomingMessage::Binary(_) => return send(&ws, &protocol::binary_refusal(att.device.is_some())),
        };
        let owner = UserId::parse(&att.uid).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.open(&owner)?;
        if self.faults && text == "__panic" {
            panic!("fault injected by a test");
        }
        match att.device {
            Some(device) => self.on_v1_frame(&ws, &owner, &device, att.exp, &text, rid).await,
            None => self.on_legacy_frame(&ws, &owner, att.exp, &text, rid).await,
        }
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        // Finish the closing handshake; 1005/1006 are not codes one may send.
        let code = if code == 1005 || code == 1006 { 1000 } else { code as u16 };
        let _ = ws.close(Some(code), Some("closing"));
        self.closed(&ws)
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        // Its queued entries stay queued; nothing to undo.
        self.closed(&ws)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        incr(Counter::DoAlarms);
        analytics::flush(&self.env);
        let rid = Rid::new();
        let due = self.shared.mailbox.borrow_mut().alarm_fired(now_ms());
        if self.step(|mb, io| mb.load_stored(io))?.is_none() {
            return Response::empty();
        }
        self.step(|mb, io| mb.woke(io))?;
        if due.archive {
            let result = self.archive(false).await;
            let retry = self.call(|mb, io| mb.archive_ended(result.is_ok(), io.now));
            if let (Some(delay_ms), Err(e)) = (retry, result) {
                let attempt = self.shared.mailbox.borrow().archive_failures();
                log(self.line(rid, "archive_failed").num("attempt", attempt.into()).num("retry_ms", delay_ms).err(&e));
            }
        }
        if due.presence {
            if let Err(e) = self.step(|mb, io| mb.presence_due(io)) {
                log(self.line(rid, "presence_failed").err(&e));
            }
        }
        if let Some(webhook) = self.webhook.as_ref().filter(|_| due.push) {
            push_calls(Rc::clone(&self.shared), Rc::clone(webhook), self.state.storage(), rid).await;
        }
        // Every alarm closes the sockets whose token expired (those that
        // neither send nor are sent anything too: `Job::Expiry` wakes it
        // then; the close frame goes out at once, and locally workerd ends
        // the connection about 10 s later), and keeps an alarm only for the
        // next expiry among the sockets still open.
        let next = self.sockets().sweep();
        self.call(|mb, io| {
            mb.sockets_expire_next(next);
            mb.alarm_done(io.now)
        });
        Response::empty()
    }
}

/// Makes the push webhook calls that are due, one at a time (a few per run
/// at most; the mailbox schedules the rest). Runs from the alarm, or at once
/// after a write (a task of its own), so it holds only what it owns.
async fn push_calls(shared: Rc<Shared>, webhook: Rc<Webhook>, storage: worker::Storage, rid: Rid) {
    let _one_at_a_time = shared.pushing.lock().await;
    for _ in 0..8 {
        let (call, alarm) = push_step(&shared, |mb, io| mb.push_next(io));
        set_alarm(&shared, &storage, alarm, rid).await;
        let call = match call {
            Ok(Some(call)) => call,
            Ok(None) => return,
            Err(e) => return log(rid.line("push_failed").err(&e)),
        };
        let status = webhook.send(&call, now_ms()).await;
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            // 0: no answer (a network error or the timeout).
            let line = rid.line("push_refused").num("status", status.unwrap_or(0).into());
            log(line.num("attempt", u64::from(call.attempt) + 1));
        }
        let jitter = random_u64() as f64 / u64::MAX as f64;
        let (more, alarm) = push_step(&shared, |mb, io| mb.push_done(io, status, jitter));
        set_alarm(&shared, &storage, alarm, rid).await;
        match more {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return log(rid.line("push_failed").err(&e)),
        }
    }
}

/// One push step of the mailbox, and the earliest alarm it asked for (the
/// push steps need no sockets, and schedule nothing else).
fn push_step<T>(shared: &Shared, f: impl FnOnce(&mut Mailbox, &Io<DoSql, ()>) -> T) -> (T, Option<u64>) {
    let io = Io { log: &shared.log, sockets: &(), now: now_ms() };
    let out = f(&mut shared.mailbox.borrow_mut(), &io);
    let alarm = shared.mailbox.borrow_mut().take_effects().into_iter().fold(None, |at, e| match e {
        Effect::SetAlarm { delay_ms } => Some(at.map_or(delay_ms, |a: u64| a.min(delay_ms))),
        _ => at,
    });
    (out, alarm)
}

/// Sets the alarm a push step asked for.
async fn set_alarm(shared: &Shared, storage: &worker::Storage, delay_ms: Option<u64>, rid: Rid) {
    let Some(delay_ms) = delay_ms else { return };
    incr(Counter::AlarmsSet);
    if let Err(e) = storage.set_alarm(delay_ms as i64).await {
        shared.mailbox.borrow_mut().alarm_not_set();
        log(rid.line("alarm_not_set").word("for", "push").err(&e));
    }
}

/// A JS error's text (a thrown value may be any value).
fn js_error(e: &wasm_bindgen::JsValue) -> String {
    e.as_string()
        .or_else(|| wasm_bindgen::JsCast::dyn_ref::<worker::js_sys::Error>(e).map(|e| String::from(e.message())))
        .unwrap_or_else(|| "a non-error value was thrown".into())
}

/// 429 for a read over `READ_RATE`, with when to try again.
fn rate_limited(retry_after_ms: u64) -> worker::Result<Response> {
    let body =
        format!(r#"{{"error":"too many history reads (READ_RATE); retry later","retry_after_ms":{retry_after_ms}}}"#);
    json(429, &body)
}

/// A frame the object itself writes (replies), counted.
fn send(ws: &WebSocket, text: &str) -> worker::Result<()> {
    incr(Counter::FramesOut);
    ws.send_with_str(text)
}

/// An empty response whose status and headers are the whole answer.
fn answer(a: Answer) -> worker::Result<Response> {
    let res = Response::empty()?.with_status(a.status());
    let mut headers = a.headers().peekable();
    if headers.peek().is_none() {
        return Ok(res);
    }
    let out = Headers::new();
    for (name, value) in headers {
        out.set(name, &value)?;
    }
    Ok(res.with_headers(out))
}

impl UserObject {
    /// One synchronous call into the core, then its effects executed.
    fn step<T, E: Into<Failure>>(
        &self,
        f: impl FnOnce(&mut Mailbox, &Io<DoSql, Sockets>) -> Result<T, E>,
    ) -> Result<T, Failure> {
        let out = self.call(f);
        out.map_err(Into::into)
    }

    fn call<T>(&self, f: impl FnOnce(&mut Mailbox, &Io<DoSql, Sockets>) -> T) -> T {
        let sockets = self.sockets();
        let io = Io { log: &self.shared.log, sockets: &sockets, now: now_ms() };
        let out = f(&mut self.shared.mailbox.borrow_mut(), &io);
        let effects = self.shared.mailbox.borrow_mut().take_effects();
        for effect in effects {
            self.execute(effect);
        }
        out
    }

    /// `GroupCall`: a group request of this user's (HTTP), passed on to the
    /// group's object within their send and read rates.
    async fn on_group_call(&self, owner: &UserId, body: &str, rid: Rid) -> worker::Result<Response> {
        let request = match self.call(|mb, io| mb.group_call(owner, body, io.now)) {
            Ok(request) => request,
            Err(refused) => {
                let (status, body) = refused.http();
                return json(status, &body);
            }
        };
        match self.to_group(&request).await {
            Ok((status, body)) if body.is_empty() => Ok(Response::empty()?.with_status(status)),
            Ok((status, body)) => json(status, &body),
            Err(e) => {
                log(self.line(rid, "group_unavailable").err(&e));
                json_error(503, "the group is temporarily unavailable; retry")
            }
        }
    }

    /// A request of this user's to a group's object; a read also moves
    /// this object's own cursor of the group (its unread count).
    async fn to_group(&self, request: &calls::Request) -> worker::Result<(u16, String)> {
        // A read carries whether the reader hides their presence: the group
        // keeps their read position from the others then.
        let mut read = None;
        if let calls::Call::Read { up_to, .. } = request.call {
            let hidden = self.shared.mailbox.borrow().settings().hide_presence;
            read = Some(calls::Request { call: calls::Call::Read { up_to, hidden }, ..request.clone() });
        }
        let request = read.as_ref().unwrap_or(request);
        let (status, body) = super::group_object::call(&self.env, request).await?;
        if let (calls::Call::Read { .. }, 200) = (&request.call, status) {
            let read = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["read"].as_u64());
            if let Some(read) = read {
                self.step(|mb, io| mb.group_read(io, &request.group, read))?;
            }
        }
        Ok((status, body))
    }

    /// A socket closed: the mailbox loaded for its user (an object woken by
    /// the close alone has not read its log), the device's acks saved, then
    /// presence told.
    fn closed(&self, ws: &WebSocket) -> worker::Result<()> {
        let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten();
        if let Some(a) = attachment {
            if let Ok(owner) = UserId::parse(&a.uid) {
                self.open(&owner)?;
                if let Some(device) = &a.device {
                    self.step(|mb, io| mb.device_closed(io, device))?;
                }
            }
        }
        Ok(self.step(|mb, io| mb.socket_closed(io))?)
    }

    /// An error line of this object's: the user as their keyed hash.
    fn line(&self, rid: Rid, event: &'static str) -> Line {
        let line = rid.line(event);
        match self.shared.mailbox.borrow().owner() {
            Some(owner) => line.user("user", owner.as_str(), &super::log_key(&self.env)),
            None => line,
        }
    }

    fn sockets(&self) -> Sockets<'_> {
        Sockets { state: &self.state, earliest_exp: &self.shared.earliest_exp }
    }

    /// A socket accepted with a token expiring at `exp` (s): closed then by
    /// the alarm, or at the next message for it if that comes first.
    fn track_expiry(&self, exp: u64) {
        let known = self.shared.earliest_exp.get();
        if known != 0 && exp != 0 {
            self.shared.earliest_exp.set(known.min(exp));
        }
        self.call(|mb, io| mb.socket_expires(io.now, exp));
    }

    /// The preamble: the mailbox loaded for `uid`; on a wake, presence
    /// checked against the sockets that survived it.
    fn open(&self, uid: &UserId) -> Result<(), Failure> {
        self.step(|mb, io| {
            mb.load(io, uid)?;
            mb.woke(io)
        })
    }

    fn execute(&self, effect: Effect) {
        match effect {
            Effect::SetAlarm { delay_ms } => {
                let storage = self.state.storage();
                let shared = Rc::clone(&self.shared);
                worker::wasm_bindgen_futures::spawn_local(async move {
                    incr(Counter::AlarmsSet);
                    if let Err(e) = storage.set_alarm(delay_ms as i64).await {
                        shared.mailbox.borrow_mut().alarm_not_set();
                        log(Rid::new().line("alarm_not_set").err(&e));
                    }
                });
            }
            Effect::Cool => {
                let shared = Rc::clone(&self.shared);
                worker::wasm_bindgen_futures::spawn_local(async move {
                    Delay::from(Duration::ZERO).await;
                    shared.mailbox.borrow_mut().cooled();
                });
            }
            Effect::Push => {
                if let Some(webhook) = &self.webhook {
                    let task =
                        push_calls(Rc::clone(&self.shared), Rc::clone(webhook), self.state.storage(), Rid::new());
                    worker::wasm_bindgen_futures::spawn_local(task);
                }
            }
            Effect::HideReads { owner, groups, hidden } => {
                for group in groups {
                    let by = crate::group::Actor::User(owner.clone());
                    let request = calls::Request { group, by, call: calls::Call::Read { up_to: 0, hidden } };
                    let env = self.env.clone();
                    // Hints: the member's next read in the group says it again.
                    worker::wasm_bindgen_futures::spawn_local(async move {
                        if let Err(e) = super::group_object::call(&env, &request).await {
                            log(Rid::new().line("group_unavailable").err(&e));
                        }
                    });
                }
            }
            Effect::Notify(notice) => {
                let request = match notice {
                    Notice::Receipt(r) => Internal::Receipt(r),
                    Notice::Typing(t) => Internal::Typing(t),
                    Notice::Presence(p) => Internal::Presence(p),
                };
                // Hints: lost on failure.
                let Ok(stub) = self.stub(request.owner()) else { return };
                worker::wasm_bindgen_futures::spawn_local(async move {
                    if let Err(e) = hop::call(&stub, &request, "").await {
                        log(Rid::new().line("notification_hop_failed").err(&js_error(&e)));
                    }
                });
            }
        }
    }

    /// Appends an entry through the group write; resolves once it is written
    /// (and, if nothing older is queued, pushed to the open sockets).
    async fn append(&self, entry: NewEntry) -> Result<Stored, Failure> {
        match self.call(|mb, io| mb.append(io, entry)) {
            Appended::Now(stored) => Ok(stored?),
            Appended::Wait { waiter, commit } => {
                let (done, stored) = oneshot::channel();
                self.shared.waiters.borrow_mut().insert(waiter, done);
                if commit {
                    Delay::from(Duration::ZERO).await;
                    for (waiter, result) in self.call(|mb, io| mb.commit(io)) {
                        if let Some(done) = self.shared.waiters.borrow_mut().remove(&waiter) {
                            let _ = done.send(result);
                        }
                    }
                }
                match stored.await {
                    Ok(result) => Ok(result?),
                    Err(_) => Err(Failure::Abandoned),
                }
            }
        }
    }

    fn stub(&self, peer: &UserId) -> worker::Result<RawStub> {
        if let Some(s) = self.shared.stubs.borrow().get(peer) {
            return Ok(s.clone());
        }
        let stub = hop::stub(&self.env.durable_object(USER_BINDING)?, peer.as_str())?;
        let mut stubs = self.shared.stubs.borrow_mut();
        if stubs.len() >= MAX_STUBS {
            stubs.clear();
        }
        stubs.insert(peer.clone(), stub.clone());
        Ok(stub)
    }

    /// Stores a chat in the recipient's log (through their object), then in
    /// the sender's own log; returns the seq of the sender's entry. `Ok`
    /// means the recipient's copy is durable.
    /// `backend`: sent through the backend API, which block lists never hold back.
    async fn send_chat(
        &self,
        chat: Chat,
        id: &str,
        time: u64,
        cmid: Option<&str>,
        backend: bool,
        rid: Rid,
    ) -> Result<u64, Refusal> {
        let plan = self.call(|mb, io| mb.plan_send(io, chat, id, time, cmid, backend))?;
        self.carry_out(plan, rid).await
    }

    /// Carries out a planned send (a chat, or an edit or delete): the
    /// peer's log first, then the sender's.
    async fn carry_out(&self, plan: SendPlan, rid: Rid) -> Result<u64, Refusal> {
        let remote = match plan {
            SendPlan::Local(entry) => {
                return self.append(entry).await.map(|s| s.seq).map_err(|e| {
                    log(self.line(rid, "send_unavailable").err(&e));
                    Refusal::Unavailable
                })
            }
            SendPlan::Remote(remote) => remote,
        };
        let answer = self.hop_deliver(&remote).await;
        let answer = match answer {
            Ok(a) if matches!(a.outcome, Outcome::Stored { .. } | Outcome::Full) => Some(a),
            other => {
                // A broken stub stays broken; the next send gets a fresh one.
                self.shared.stubs.borrow_mut().remove(&remote.to);
                if let Err(e) = other {
                    log(self.line(rid, "delivery_hop_failed").err(&e));
                }
                None
            }
        };
        let entry = self.shared.mailbox.borrow_mut().hop_answered(remote, answer)?;
        match self.append(entry).await {
            Ok(stored) => Ok(stored.seq),
            Err(e) => {
                // The recipient has it, which is what `ok` promises; only this
                // user's own log lacks the copy.
                log(self.line(rid, "sender_copy_lost").err(&e));
                Ok(0)
            }
        }
    }

    async fn on_legacy_frame(
        &self,
        ws: &WebSocket,
        owner: &UserId,
        exp: u64,
        text: &str,
        rid: Rid,
    ) -> worker::Result<()> {
        let reply = match self.call(|mb, io| mb.legacy_frame(owner, exp, text, io.now)) {
            LegacyStep::Close(code, reason) => return ws.close(Some(code), Some(reason)),
            LegacyStep::Reply(reply) => reply,
            LegacyStep::Send(chat) => {
                let now = now_ms();
                match self.send_chat(chat, &new_id(now, random_u64()), now, None, false, rid).await {
                    Ok(_) => Reply::Stored,
                    Err(r) => Reply::Refused(r),
                }
            }
        };
        send(ws, legacy::encode(&reply))
    }

    async fn on_v1_frame(
        &self,
        ws: &WebSocket,
        owner: &UserId,
        device: &str,
        exp: u64,
        text: &str,
        rid: Rid,
    ) -> worker::Result<()> {
        match self.step(|mb, io| mb.v1_frame(io, device, exp, text))? {
            V1Step::Done => Ok(()),
            V1Step::Reply(reply) => send(ws, &reply),
            V1Step::Close(code, reason) => ws.close(Some(code), Some(reason)),
            V1Step::Send { re, chat, mid, cmid } => {
                let result = self.send_chat(chat, &mid, now_ms(), Some(&cmid), false, rid).await;
                let result = result.map_err(v1::V1Error::from_refusal);
                let reply = self.shared.mailbox.borrow_mut().v1_sent(&re, &mid, &cmid, result);
                send(ws, &reply)
            }
            V1Step::Edit { re, target, op, mid, cmid } => {
                let plan = self.call(|mb, io| mb.plan_edit(io, &target, op, &mid, Some(&cmid), false));
                let result = match plan {
                    Ok(plan) => self.carry_out(plan, rid).await.map_err(v1::V1Error::from_refusal),
                    Err(r) => Err(v1::V1Error::from_edit(r)),
                };
                let reply = self.shared.mailbox.borrow_mut().v1_sent(&re, &mid, &cmid, result);
                send(ws, &reply)
            }
            V1Step::Watch { re, peer } => {
                let ttl_ms = self.shared.mailbox.borrow().limits().watch_ttl_ms;
                let reply = match self.presence_of(owner, &peer, ttl_ms, rid).await {
                    Some(p) => v1::presence(Some(&re), peer.as_str(), p),
                    None => v1::error(Some(&re), v1::V1Error::Unavailable),
                };
                send(ws, &reply)
            }
            V1Step::Group { re, request } => {
                let reply = match self.to_group(&request).await {
                    Ok((status, body)) => v1::group_reply(&re, status, &body),
                    Err(e) => {
                        log(self.line(rid, "group_unavailable").err(&e));
                        v1::error(Some(&re), v1::V1Error::Unavailable)
                    }
                };
                send(ws, &reply)
            }
            V1Step::History { re, query } => {
                let reply = match self.log_page(owner, &query).await {
                    Ok((items, next)) => v1::history(&re, &items, next),
                    Err(e) => {
                        log(self.line(rid, "history_unavailable").err(&e));
                        v1::error(Some(&re), v1::V1Error::Unavailable)
                    }
                };
                send(ws, &reply)
            }
        }
    }

    /// `Deliver`: another object (or the API) stores a message here.
    async fn on_deliver(&self, d: Delivery, body: String, rid: Rid) -> worker::Result<Response> {
        incr(Counter::DeliverHops);
        let hot = self.shared.fanin.note([d.peer.as_ref()]);
        match self.step(|mb, io| mb.deliver(io, d, body))? {
            DeliverStep::Answer(a) => fanin_hop::answer_hot(a, hot),
            DeliverStep::Append(entry) => {
                let stored = self.append(entry).await;
                if let Err(e) = &stored {
                    log(self.line(rid, "delivery_unavailable").err(e));
                }
                fanin_hop::answer_hot(Mailbox::delivered(stored.ok()), hot)
            }
        }
    }

    /// `Edit`: the backend edits or deletes a chat of this user's.
    async fn on_api_edit(&self, e: &ApiEdit, body: &str, rid: Rid) -> worker::Result<Response> {
        let outcome = match self.step(|mb, io| mb.api_edit(io, e, body))? {
            ApiEditStep::Answer(outcome) => outcome,
            ApiEditStep::Plan(plan) => match self.carry_out(*plan, rid).await {
                Ok(_) => Outcome::Stored { pushed: true },
                Err(r) => mailbox::api_edit_outcome(crate::edits::EditRefusal::Send(r)),
            },
            ApiEditStep::Group { group, op } => {
                let edit = match op {
                    crate::edits::EditOp::Edit(fields) => Some(fields),
                    crate::edits::EditOp::Delete { .. } => None,
                };
                let sender = Some(e.uid.clone());
                // The op's id is the one the entry answers with.
                let call = calls::Call::Moderate { mid: e.target.clone(), sender, edit, id: Some(e.id.clone()) };
                let request = calls::Request { group, by: crate::group::Actor::Backend, call };
                match super::group_object::call(&self.env, &request).await {
                    Ok((200, _)) => Outcome::Stored { pushed: true },
                    Ok((404, _)) => Outcome::NotFound,
                    Ok((409, _)) => Outcome::Conflict,
                    Ok((400, _)) => Outcome::Bad,
                    Ok(_) => Outcome::Unavailable,
                    Err(err) => {
                        log(self.line(rid, "group_unavailable").err(&err));
                        Outcome::Unavailable
                    }
                }
            }
        };
        answer(Answer::of(outcome))
    }

    /// `user`'s presence as `asker` may see it (and watched for `ttl_ms`):
    /// from this object for the user themself, else a hop. `None`: the hop failed.
    async fn presence_of(&self, asker: &UserId, user: &UserId, ttl_ms: u64, rid: Rid) -> Option<v1::Presence> {
        if user == asker {
            return Some(self.call(|mb, io| mb.own_presence(io.sockets, io.now)));
        }
        let request = Internal::Watch(Watch { owner: user.clone(), from: asker.clone(), ttl_ms });
        let stub = self.stub(user).ok()?;
        match hop::call(&stub, &request, "").await {
            Ok(a) => a.presence,
            Err(e) => {
                log(self.line(rid, "presence_hop_failed").err(&js_error(&e)));
                None
            }
        }
    }

    /// `GET /v1/conversations`: the page, with each peer's presence (one hop
    /// per peer, all at once; a peer whose object did not answer shows as
    /// offline).
    async fn on_conversations(&self, uid: &UserId, q: &PageQuery, rid: Rid) -> worker::Result<Response> {
        let rows = self.step(|mb, io| mb.conversations(io, uid, q))?;
        let shown = &rows[..rows.len().min(q.limit as usize)];
        let asks =
            shown.iter().filter(|c| !c.group).filter_map(|c| UserId::parse(&c.peer).ok()).map(|peer| async move {
                let p = self.presence_of(uid, &peer, 0, rid).await.unwrap_or_default();
                (peer, p)
            });
        let presence: Vec<(UserId, v1::Presence)> = join_all(asks).await;
        let of = |peer: &str| presence.iter().find(|(p, _)| p.as_str() == peer).map(|(_, p)| *p).unwrap_or_default();
        json(200, &v1::conversations(&rows, q.limit, of))
    }

    /// `Send`: the backend sends a chat on this user's behalf.
    async fn on_api_send(&self, s: ApiSend, body: &str, rid: Rid) -> worker::Result<Response> {
        let cmid = s.cmid.as_deref();
        let outcome = match self.step(|mb, io| mb.api_send(io, &s.uid, cmid, body))? {
            ApiStep::Answer(outcome) => outcome,
            ApiStep::Send(chat) => Mailbox::api_outcome(self.send_chat(chat, &s.id, s.time_ms, cmid, true, rid).await),
        };
        answer(Answer::of(outcome))
    }

    /// A new legacy socket: accepted for hibernation, then the queue replayed
    /// into it before anything live (no await in between).
    fn on_connect(&self, uid: &UserId, exp: u64) -> worker::Result<Response> {
        if let Err(r) = self.shared.mailbox.borrow().admit_socket(self.state.get_websockets().len()) {
            return json_error(r.status, &r.message);
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[tag(Mode::Legacy)]);
        pair.server.serialize_attachment(Attachment { uid: uid.to_string(), device: None, exp })?;
        self.track_expiry(exp);
        self.step(|mb, io| mb.connect_legacy(io, &pair.server))?;
        self.step(|mb, io| mb.socket_opened(io))?;
        Response::from_websocket(pair.client)
    }

    /// A new v1 socket: `welcome`, the replay, then live entries.
    fn on_connect_v1(&self, uid: &UserId, exp: u64, c: &V1Connect) -> worker::Result<Response> {
        let (device, since) = (c.device.as_str(), c.since);
        if let Err(r) = self.shared.mailbox.borrow().admit_v1(device, self.state.get_websockets().len()) {
            return json_error(r.status, &r.message);
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[tag(Mode::V1)]);
        let att = Attachment { uid: uid.to_string(), device: Some(device.to_owned()), exp };
        pair.server.serialize_attachment(att)?;
        self.track_expiry(exp);
        self.step(|mb, io| mb.connect_v1(io, &pair.server, device, since))?;
        self.step(|mb, io| mb.socket_opened(io))?;
        let headers = Headers::new();
        headers.set("sec-websocket-protocol", v1::SUBPROTOCOL)?;
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    /// `Receipt`: a peer received or read this user's messages.
    fn on_receipt(&self, r: &Receipt) -> worker::Result<Response> {
        self.step(|mb, io| mb.receipt(io, r))?;
        answer(Answer::of(Outcome::Done))
    }

    /// `Typing`: shown on this user's live v1 sockets, never stored.
    fn on_typing(&self, t: &Typing) -> worker::Result<Response> {
        self.step(|mb, io| mb.typing(io, t))?;
        answer(Answer::of(Outcome::Done))
    }

    /// `GET /history`: archive what is pending first, so a page always holds
    /// everything this user's log had when it was asked for.
    async fn on_history(&self, uid: &UserId, q: &PageQuery, rid: Rid) -> worker::Result<Response> {
        match self.page(uid, Shape::Legacy, q).await {
            Ok(rows) => json(200, &page_json(&rows, q.limit)),
            Err(e) => self.history_unavailable(e, rid),
        }
    }

    /// `GET /v1/history`: a page of the log as `msg` frames.
    async fn on_v1_history(&self, uid: &UserId, q: &PageQuery, rid: Rid) -> worker::Result<Response> {
        match self.log_page(uid, q).await {
            Ok((items, next)) => json(200, &v1::page(&items, next)),
            Err(e) => self.history_unavailable(e, rid),
        }
    }

    /// The answer when D1 could not be written or read: the archive is
    /// scheduled again, and the client is told to retry.
    fn history_unavailable(&self, e: Failure, rid: Rid) -> worker::Result<Response> {
        log(self.line(rid, "history_unavailable").err(&e));
        self.call(|mb, io| mb.history_failed(io.now));
        json_error(503, "history is temporarily unavailable; retry")
    }

    /// A page of v1 `msg` frames.
    async fn log_page(&self, owner: &UserId, q: &PageQuery) -> Result<(Vec<v1::EncodedMsg>, Option<u64>), Failure> {
        let rows = self.page(owner, Shape::V1, q).await?;
        Ok(v1::page_items(&rows, q.limit))
    }

    /// A page of this user's history, as they see it: what they deleted for
    /// themself shows as a tombstone.
    async fn page(&self, owner: &UserId, shape: Shape, q: &PageQuery) -> Result<Vec<PageRow>, Failure> {
        let mut rows = self.rows(owner, shape, q).await?;
        let store = |e: StoreError| Failure::Core(mailbox::Error::from(e));
        self.shared.log.hide_in(&mut rows).map_err(store)?;
        Ok(rows)
    }

    /// The rows of a page as history holds them: from the user's own log as
    /// far as it reaches (no D1 at all for the usual, newest pages), and from
    /// D1 below it (see [`d1_part`]) after an urgent archive pass. A legacy
    /// page asks D1 only whether sent chats that were queued at the
    /// recipient reached them since (`isSend`).
    async fn rows(&self, owner: &UserId, shape: Shape, q: &PageQuery) -> Result<Vec<PageRow>, Failure> {
        let log = &self.shared.log;
        let store = |e: StoreError| Failure::Core(mailbox::Error::from(e));
        let oldest = log.oldest().map_err(store)?;
        let mut from_log = log.page(shape, q, &[]).map_err(store)?;
        let below = d1_part(shape, q, oldest, from_log.len());
        let queued = match shape {
            Shape::Legacy => log.page_queued_sends(shape, q).map_err(store)?,
            Shape::V1 => Vec::new(),
        };
        if below.is_none() && queued.is_empty() {
            return Ok(merge(vec![from_log], shape, q));
        }
        self.archive(true).await?;
        if !queued.is_empty() {
            let delivered = self.delivered(&queued).await?;
            if !delivered.is_empty() {
                from_log = log.page(shape, q, &delivered).map_err(store)?;
            }
        }
        let Some(below) = below else { return Ok(merge(vec![from_log], shape, q)) };
        let all = match below.peer {
            Some(_) => Vec::new(),
            None => log.conversation_ids(owner).map_err(store)?,
        };
        let convs = page_convs(owner, shape, &below, || all);
        let shards = self.by_shard(convs.clone());
        let reads = shards
            .iter()
            .map(|(shard, convs)| d1::page(&self.env, *shard, shape, owner, convs, &below, self.partitions()));
        let mut parts = vec![from_log];
        for part in join_all(reads).await {
            parts.push(part?);
        }
        let page = merge(parts, shape, q);
        // Older than D1 holds: cold storage, when the page is not full yet
        // (its rows are older than every row in D1).
        let cold_tier = self.partitions().0.cold_before(now_ms()).is_some();
        let Some(bucket) = cold::bucket(&self.env).filter(|_| cold_tier) else { return Ok(page) };
        if page.len() > q.limit as usize && !shape.ascending(q) {
            return Ok(page);
        }
        let mut parts = vec![page];
        for conv in &convs {
            let objects = cold::objects(&bucket, conv).await?;
            parts.push(crate::cold::page(&objects, owner, shape, &below));
        }
        Ok(merge(parts, shape, q))
    }

    /// Of sent chats `(conv, id)`, the ids history knows reached their recipient.
    async fn delivered(&self, sent: &[(String, String)]) -> Result<Vec<String>, Failure> {
        let mut pairs: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
        let shards = self.shared.mailbox.borrow().config().shards;
        for (conv, id) in sent {
            pairs.entry(shard_of(conv, shards)).or_default().push((conv.clone(), id.clone()));
        }
        let mut ids = Vec::new();
        for (shard, pairs) in pairs {
            ids.extend(d1::delivered(&self.env, shard, &pairs, self.partitions()).await?);
        }
        Ok(ids)
    }

    fn by_shard(&self, convs: Vec<String>) -> BTreeMap<u32, Vec<String>> {
        let shards = self.shared.mailbox.borrow().config().shards;
        let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for conv in convs {
            by_shard.entry(shard_of(&conv, shards)).or_default().push(conv);
        }
        by_shard
    }

    fn partitions(&self) -> (Partitioning, u64) {
        (self.shared.mailbox.borrow().config().partitioning, now_ms())
    }

    /// Hands the rows of a pass to their shards' writers, all at once;
    /// done when every writer confirmed D1 has them.
    async fn hand_off(&self, handoffs: &[Handoff], urgent: bool) -> Result<(), Failure> {
        let calls = handoffs.iter().map(|h| {
            let request = Archive { shard: h.shard, first_day: h.first_day, urgent };
            async move {
                incr(Counter::Handoffs);
                let stub = self.writer(h.shard)?;
                match hop::archive(&stub, &request, &h.rows).await {
                    Ok(a) if a.outcome == Outcome::Done => Ok(()),
                    Ok(a) => Err(Failure::History(format!("shard {} answered {}", h.shard, a.status()))),
                    Err(_) => Err(Failure::History(format!("shard {}: no answer", h.shard))),
                }
            }
        });
        join_all(calls).await.into_iter().collect()
    }

    fn writer(&self, shard: u32) -> Result<RawStub, Failure> {
        if let Some(s) = self.shared.writers.borrow().get(&shard) {
            return Ok(s.clone());
        }
        let request = Archive { shard, first_day: 0, urgent: false };
        let stub = hop::stub(&self.env.durable_object(WRITER_BINDING)?, &request.writer())?;
        self.shared.writers.borrow_mut().insert(shard, stub.clone());
        Ok(stub)
    }

    /// Hands the log to history up to its head, batch by batch, then prunes.
    /// `reader`: a page waits for it (see [`Mailbox::archive_next`]).
    async fn archive(&self, reader: bool) -> Result<(), Failure> {
        let _one_at_a_time = self.archiving.lock().await;
        if self.step(|mb, io| mb.load_stored(io))?.is_none() {
            return Ok(());
        }
        if reader {
            let recent = self.step(|mb, io| mb.recent_received(io))?;
            self.hand_off(&recent, true).await?;
        }
        while let Some(batch) = self.step(|mb, io| mb.archive_next(io, reader))? {
            self.hand_off(&batch.handoffs, reader).await?;
            self.step(|mb, io| mb.archived(io, batch))?;
        }
        self.step(|mb, io| mb.archive_finish(io))
    }
}
