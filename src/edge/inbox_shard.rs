//! An inbox shard of a hot user (`inbox:<user>:<k>`): the platform side of
//! a [`ShardQueue`].
//!
//! Senders' objects hand it deliveries; each waits until the batch that
//! carries it was answered by the user's object, and gets that object's
//! answer for it. It stores nothing: an evicted shard drops the deliveries
//! it holds unanswered, and their senders send them again (as after a
//! failed direct hop).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use worker::{durable_object, Delay, DurableObject, Env, Headers, Request, Response, State};

use super::hop::{self, RawStub};
use super::{log, now_ms, Rid, USER_BINDING};
use crate::fanin::{FaninConfig, Next, ShardQueue, Ticket, HOT_HEADER};
use crate::internal::{Answer, Internal, Outcome};
use crate::metrics::{incr, Counter};
use crate::user::UserId;

/// A delivery's answer, and the user's shard count when they are hot.
type Answered = (Answer, Option<u32>);

struct Shared {
    queue: RefCell<ShardQueue>,
    waiting: RefCell<HashMap<Ticket, oneshot::Sender<Answered>>>,
    /// One stub for the user's object: a shard's batches reach it in order.
    stub: RefCell<Option<RawStub>>,
}

#[durable_object]
pub struct InboxShard {
    env: Env,
    shared: Rc<Shared>,
}

impl DurableObject for InboxShard {
    fn new(_state: State, env: Env) -> Self {
        let config = FaninConfig::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        let shared = Rc::new(Shared {
            queue: RefCell::new(ShardQueue::new(config.flush_ms)),
            waiting: RefCell::new(HashMap::new()),
            stub: RefCell::new(None),
        });
        InboxShard { env, shared }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        incr(Counter::InboxHops);
        super::analytics::flush(&self.env);
        let url = req.inner().url();
        let owner = match Internal::parse(&url) {
            Ok(Internal::Deliver(d)) => d.owner,
            Ok(_) | Err(_) => {
                log(Rid::new().line("bad_internal_request"));
                return respond(Answer::of(Outcome::Bad), None);
            }
        };
        let body = req.text().await?;
        let (ticket, next) = self.shared.queue.borrow_mut().add(url, body, now_ms());
        let (done, answered) = oneshot::channel();
        self.shared.waiting.borrow_mut().insert(ticket, done);
        if let Next::Flush { delay_ms } = next {
            spawn_flush(&self.env, &self.shared, owner, delay_ms);
        }
        // A dropped sender (the flush task died) is a failed hop: sent again.
        let (answer, hot) = answered.await.unwrap_or((Answer::of(Outcome::Unavailable), None));
        respond(answer, hot)
    }
}

fn respond(a: Answer, hot: Option<u32>) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in a.headers() {
        headers.set(name, &value)?;
    }
    if let Some(k) = hot {
        headers.set(HOT_HEADER, &k.to_string())?;
    }
    Ok(Response::empty()?.with_status(a.status()).with_headers(headers))
}

fn spawn_flush(env: &Env, shared: &Rc<Shared>, owner: UserId, delay_ms: u64) {
    let (env, shared) = (env.clone(), Rc::clone(shared));
    worker::wasm_bindgen_futures::spawn_local(async move {
        if delay_ms > 0 {
            Delay::from(Duration::from_millis(delay_ms)).await;
        }
        flush(&env, &shared, &owner).await;
    });
}

/// Sends batches to the user's object, one at a time and at most one per
/// `INBOX_FLUSH_MS`, until none waits.
async fn flush(env: &Env, shared: &Shared, owner: &UserId) {
    loop {
        let Some(batch) = shared.queue.borrow_mut().take(now_ms()) else { return };
        let request = Internal::InboxBatch { owner: owner.clone() };
        let n = batch.tickets.len();
        let result = match user_stub(env, shared, owner) {
            Ok(stub) => hop::inbox_batch(&stub, &request, &batch.body, n).await.map_err(|e| format!("{e:?}")),
            Err(e) => Err(e.to_string()),
        };
        let (answers, hot) = match result {
            Ok(answered) => answered,
            Err(e) => {
                // A broken stub stays broken; the next batch gets a fresh one.
                shared.stub.borrow_mut().take();
                log(Rid::new().line("inbox_batch_failed").num("deliveries", n as u64).err(&e));
                (vec![Answer::of(Outcome::Unavailable); n], None)
            }
        };
        for (ticket, answer) in batch.tickets.into_iter().zip(answers) {
            let done = shared.waiting.borrow_mut().remove(&ticket);
            if let Some(done) = done {
                let _ = done.send((answer, hot));
            }
        }
        // Bound first: a borrow in the match would live across the delay.
        let next = shared.queue.borrow_mut().answered(now_ms());
        match next {
            Next::Wait => return,
            Next::Flush { delay_ms: 0 } => {}
            Next::Flush { delay_ms } => Delay::from(Duration::from_millis(delay_ms)).await,
        }
    }
}

fn user_stub(env: &Env, shared: &Shared, owner: &UserId) -> worker::Result<RawStub> {
    if let Some(stub) = shared.stub.borrow().as_ref() {
        return Ok(stub.clone());
    }
    let stub = hop::stub(&env.durable_object(USER_BINDING)?, owner.as_str())?;
    *shared.stub.borrow_mut() = Some(stub.clone());
    Ok(stub)
}
