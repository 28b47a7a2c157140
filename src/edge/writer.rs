//! The history writer of one shard: the platform side of a
//! [`crate::archive::Batcher`].
//!
//! Users' objects hand it rows; each hand-off waits until the flush that
//! holds it was confirmed by D1, and is answered `Done` or `Unavailable`.
//! It stores nothing itself: an evicted writer drops its batch and the
//! waiting hand-offs fail, so their users hand the rows in again (writes
//! are idempotent by message).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use worker::{durable_object, Delay, DurableObject, Env, Request, Response, State};

use super::{cold, d1, limits, log, now_ms, Rid};
use crate::archive::{Batcher, Next, Ticket, WriterConfig};
use crate::history::{BATCH_BYTES, BATCH_ROWS};
use crate::internal::{Answer, Archive, Outcome};
use crate::limits::Limits;
use crate::metrics::{incr, Counter};

struct Shared {
    batcher: RefCell<Batcher>,
    waiting: RefCell<HashMap<Ticket, oneshot::Sender<bool>>>,
    /// Partitions this instance knows exist (created, listed, retention run).
    open: RefCell<HashSet<u64>>,
    limits: Limits,
}

#[durable_object]
pub struct HistoryWriter {
    env: Env,
    shared: Rc<Shared>,
}

impl DurableObject for HistoryWriter {
    fn new(_state: State, env: Env) -> Self {
        let limits = limits(&env).unwrap_or_default();
        let config =
            WriterConfig { flush_ms: limits.history_flush_ms, max_rows: BATCH_ROWS as usize, max_bytes: BATCH_BYTES };
        let shared = Rc::new(Shared {
            batcher: RefCell::new(Batcher::new(config)),
            waiting: RefCell::new(HashMap::new()),
            open: RefCell::new(HashSet::new()),
            limits,
        });
        HistoryWriter { env, shared }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        incr(Counter::DoFetches);
        super::analytics::flush(&self.env);
        let rid = Rid::new();
        let request = match Archive::parse(&req.inner().url()) {
            Ok(request) => request,
            Err(e) => {
                log(rid.line("bad_internal_request").err(&e));
                return answer(Outcome::Bad);
            }
        };
        let rows = req.text().await?;
        let added = self.shared.batcher.borrow_mut().add(request.first_day, &rows, request.urgent);
        let (ticket, next) = match added {
            Ok(added) => added,
            Err(_) => {
                // The parser's text could quote the rows: only the event.
                log(rid.line("bad_handoff"));
                return answer(Outcome::Bad);
            }
        };
        let (done, confirmed) = oneshot::channel();
        self.shared.waiting.borrow_mut().insert(ticket, done);
        let shard = request.shard;
        match next {
            Next::Flush => spawn_flush(&self.env, &self.shared, shard, 0),
            Next::Schedule { delay_ms } => spawn_flush(&self.env, &self.shared, shard, delay_ms),
            Next::Wait => {}
        }
        // A dropped sender (the flush task died) is a failed write.
        let ok = confirmed.await.unwrap_or(false);
        answer(if ok { Outcome::Done } else { Outcome::Unavailable })
    }
}

fn answer(outcome: Outcome) -> worker::Result<Response> {
    Ok(Response::empty()?.with_status(Answer::of(outcome).status()))
}

fn spawn_flush(env: &Env, shared: &Rc<Shared>, shard: u32, delay_ms: u64) {
    let (env, shared) = (env.clone(), Rc::clone(shared));
    worker::wasm_bindgen_futures::spawn_local(async move {
        if delay_ms > 0 {
            Delay::from(Duration::from_millis(delay_ms)).await;
        }
        flush(&env, &shared, shard).await;
    });
}

/// Writes what the batch holds, one statement per partition, then answers
/// every hand-off in it.
async fn flush(env: &Env, shared: &Shared, shard: u32) {
    let batch = shared.batcher.borrow_mut().take();
    if batch.tickets.is_empty() {
        return;
    }
    incr(Counter::WriterFlushes);
    let mut result = Ok(());
    for (first_day, rows) in &batch.parts {
        result = write_part(env, shared, shard, *first_day, rows).await;
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = &result {
        log(Rid::new()
            .line("history_write_failed")
            .num("shard", shard.into())
            .num("handoffs", batch.tickets.len() as u64)
            .err(e));
    }
    let mut waiting = shared.waiting.borrow_mut();
    for ticket in batch.tickets {
        if let Some(done) = waiting.remove(&ticket) {
            let _ = done.send(result.is_ok());
        }
    }
}

async fn write_part(env: &Env, shared: &Shared, shard: u32, first_day: u64, rows: &str) -> worker::Result<()> {
    let p = shared.limits.partitioning;
    let part = p.of(first_day * 86_400_000);
    if !shared.open.borrow().contains(&first_day) {
        d1::open_partition(env, shard, &part, &p, now_ms()).await?;
        shared.open.borrow_mut().insert(first_day);
        // Older partitions move to cold storage meanwhile, off the flush's path.
        let env = env.clone();
        worker::wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = cold::export(&env, shard, &p, now_ms()).await {
                log(Rid::new().line("cold_export_failed").num("shard", shard.into()).err(&e));
            }
        });
    }
    let written = d1::write(env, shard, &part.table(), rows).await;
    if written.is_err() {
        // The table may be gone (dropped by hand, or by a retention change):
        // open it again on the next flush.
        shared.open.borrow_mut().remove(&first_day);
    }
    written
}
