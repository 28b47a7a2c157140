//! A group's Durable Object: the platform side of a [`Group`].
//!
//! Every request is a [`calls::Request`] from the entry (or a user object);
//! it makes one call into the core and answers with the core's reply, then
//! executes the effects that came back: a delivery hop per member owed
//! something (each answered back into the core), the alarm that drives
//! retries and resumes a fan-out after eviction, and typing relays.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

use super::hop::{self, RawStub};
use super::sql::DoSql;
use super::{analytics, json, json_error, limits, log, now_ms, random_u64, Rid, GROUP_BINDING, USER_BINDING};
use futures::future::join_all;

use crate::group::calls::{self, Request as Call};
use crate::group::store::Store;
use crate::group::{adds, Actor};
use crate::group::{Config, Delivery, Effect, Group};
use crate::internal::{Internal, Outcome};
use crate::message::new_id;
use crate::metrics::{incr, Counter};
use crate::protocol::v1;
use crate::user::UserId;

/// Stubs of members' objects kept per member (one per member keeps the
/// deliveries to each in order).
const MAX_STUBS: usize = 1024;

struct Shared {
    env: Env,
    state: State,
    group: RefCell<Group<DoSql>>,
    stubs: RefCell<HashMap<UserId, RawStub>>,
}

#[durable_object]
pub struct GroupObject {
    env: Env,
    shared: Rc<Shared>,
}

impl DurableObject for GroupObject {
    fn new(state: State, env: Env) -> Self {
        let config = Config {
            // The entry refuses every request while a limit var is invalid.
            max_members: limits(&env).map_or(crate::group::DEFAULT_MAX_MEMBERS, |l| l.group_max_members),
            ..Config::default()
        };
        let group = match Store::open(DoSql(state.storage().sql())).and_then(|s| Group::open(s, config)) {
            Ok(g) => g,
            // Without its store the object can do nothing useful; fail loudly.
            Err(e) => panic!("cannot open the group store: {e}"),
        };
        let shared = Rc::new(Shared {
            env: env.clone(),
            state,
            group: RefCell::new(group),
            stubs: RefCell::new(HashMap::new()),
        });
        GroupObject { env, shared }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        analytics::flush(&self.env);
        let rid = Rid::new();
        let body = req.text().await?;
        let call = match Call::parse(&body) {
            Ok(call) => call,
            Err(e) => {
                log(rid.line("bad_group_request").err(&e));
                return json_error(400, "bad group request");
            }
        };
        let is_send = matches!(call.call, calls::Call::Send { .. });
        // Whoever is put in the group is asked first (no borrow held across the hops).
        let ask = adds::consent_needed(&self.shared.group.borrow(), &call);
        let answers = match (&call.by, ask.is_empty()) {
            (Actor::User(by), false) => ask_consent(&self.shared, by, ask).await,
            _ => Vec::new(),
        };
        let now = now_ms();
        let id = new_id(now, random_u64());
        let reply = adds::handle_consented(&mut self.shared.group.borrow_mut(), call, &answers, &id, now);
        if reply.status == 503 {
            log(rid.line("group_unavailable"));
        } else if is_send && reply.status == 200 {
            incr(Counter::GroupMessages);
        }
        execute(&self.shared, rid);
        for (member, frame) in reply.relays {
            relay(&self.shared, member, frame);
        }
        if reply.body.is_empty() {
            return Ok(Response::empty()?.with_status(reply.status));
        }
        json(reply.status, &reply.body)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        incr(Counter::DoAlarms);
        analytics::flush(&self.env);
        let rid = Rid::new();
        if let Err(e) = self.shared.group.borrow_mut().alarm_fired(now_ms()) {
            log(rid.line("group_alarm_failed").err(&e));
        }
        execute(&self.shared, rid);
        Response::empty()
    }
}

/// Sends a request to its group's object: the answer's status and body.
pub async fn call(env: &Env, request: &Call) -> worker::Result<(u16, String)> {
    let stub = env.durable_object(GROUP_BINDING)?.get_by_name(request.group.as_str())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(request.encode().into()));
    let mut res = stub.fetch_with_request(Request::new_with_init("https://group/", &init)?).await?;
    let status = res.status_code();
    Ok((status, if status == 204 { String::new() } else { res.text().await? }))
}

/// Asks each user's object whether they accept being put in the group by
/// `by`, all at once (a create asks up to `GROUP_MAX_MEMBERS`).
async fn ask_consent(shared: &Shared, by: &UserId, users: Vec<UserId>) -> Vec<adds::Consent> {
    let asks = users.into_iter().map(|user| async move {
        let request = Internal::MayAdd { owner: user.clone(), by: by.clone() };
        let answer = match stub(shared, &user) {
            Some(stub) => hop::call(&stub, &request, "").await.ok(),
            None => None,
        };
        let yes = answer.and_then(|a| match a.outcome {
            Outcome::Done => Some(true),
            Outcome::Conflict => Some(false),
            _ => None,
        });
        (user, yes)
    });
    join_all(asks).await
}

/// Carries out what the core asked for. Hops run as tasks of their own:
/// the request that stored a message answers without waiting for them.
fn execute(shared: &Rc<Shared>, rid: Rid) {
    let effects = shared.group.borrow_mut().take_effects();
    for effect in effects {
        match effect {
            Effect::Deliver(d) => worker::wasm_bindgen_futures::spawn_local(deliver(Rc::clone(shared), d, rid)),
            Effect::SetAlarm { at_ms } => {
                let storage = shared.state.storage();
                worker::wasm_bindgen_futures::spawn_local(async move {
                    incr(Counter::AlarmsSet);
                    let delay = at_ms.saturating_sub(now_ms()) as i64;
                    if let Err(e) = storage.set_alarm(delay).await {
                        log(rid.line("alarm_not_set").word("for", "group").err(&e));
                    }
                });
            }
            Effect::Typing { from, to, typing } => {
                let Some(group) = shared.group.borrow().id().cloned() else { continue };
                let frame = v1::group_typing(&group.wire(), from.as_str(), typing);
                for member in to {
                    relay(shared, member, frame.clone());
                }
            }
        }
    }
}

/// A frame for a member's live sockets: a hint, lost on failure.
fn relay(shared: &Shared, member: UserId, frame: String) {
    let Some(stub) = stub(shared, &member) else { return };
    worker::wasm_bindgen_futures::spawn_local(async move {
        let _ = hop::call(&stub, &Internal::Relay { owner: member }, &frame).await;
    });
}

fn stub(shared: &Shared, member: &UserId) -> Option<RawStub> {
    if let Some(s) = shared.stubs.borrow().get(member) {
        return Some(s.clone());
    }
    let stub = shared.env.durable_object(USER_BINDING).and_then(|ns| hop::stub(&ns, member.as_str())).ok()?;
    let mut stubs = shared.stubs.borrow_mut();
    if stubs.len() >= MAX_STUBS {
        stubs.clear();
    }
    stubs.insert(member.clone(), stub.clone());
    Some(stub)
}

/// One delivery hop, its answer given back to the core.
async fn deliver(shared: Rc<Shared>, d: Delivery, rid: Rid) {
    incr(Counter::GroupDeliveries);
    let request = Internal::GroupDeliver { owner: d.member.clone() };
    let answer = match stub(&shared, &d.member) {
        Some(stub) => hop::call(&stub, &request, &calls::encode_delivery(&d)).await.ok(),
        None => None,
    };
    let now = now_ms();
    let result = match answer.as_ref().and_then(calls::read_hop_answer) {
        Some(a) => shared.group.borrow_mut().answered(&d.member, d.flight, a, now),
        None => {
            shared.stubs.borrow_mut().remove(&d.member);
            log(rid.line("group_delivery_failed").num("attempt_entries", d.entries.len() as u64));
            shared.group.borrow_mut().failed(&d.member, d.flight, now)
        }
    };
    if let Err(e) = result {
        log(rid.line("group_unavailable").err(&e));
    }
    execute(&shared, rid);
}
