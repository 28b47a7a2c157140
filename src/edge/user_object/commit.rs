//! Group commit of the user's log: every write event costs the runtime a
//! commit (most of the price of a message), so entries appended close
//! together share one write, and the pushes that follow it go out in order.

use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use worker::Delay;

use super::{send, NewEntry, Stored, UserObject, Waiting, LEGACY, V1};
use crate::message::Kind;
use crate::metrics::{add, Counter};
use crate::protocol::v1::{self, EntryKind};

impl UserObject {
    /// Appends an entry to the log; resolves once it is written (and, if
    /// nothing older is queued, pushed to the open sockets).
    ///
    /// Group commit: every event that writes costs the runtime a commit, which
    /// is most of the price of a message. An entry that finds the log idle is
    /// written at once; entries that arrive within the next timer tick share
    /// one later write. Nobody is answered before the write holding their entry,
    /// and entries are written in the order they were appended.
    pub(super) async fn append(&self, entry: NewEntry) -> worker::Result<Stored> {
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
        let v1_sockets = self.state.get_websockets_with_tag(V1);
        let mut inbox = self.inbox();
        let owner = self.owner()?;
        // Any open socket of the user, legacy or v1, takes an entry off the queue.
        let open = sockets.len() + v1_sockets.len();
        let admitted: Vec<_> = batch.iter().map(|w| inbox.admit(w.entry.kind, open)).collect();
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
            let live = a.push_now && failed_from.is_none();
            let mut pushed = false;
            if live {
                for ws in &sockets {
                    pushed |= send(ws, &w.entry.body).is_ok();
                }
            }
            // v1 devices get every entry in seq order, their own sends
            // included; what a device has is decided by its acks.
            if !v1_sockets.is_empty() {
                let frame = v1_frame(a.seq, &w.entry);
                for ws in &v1_sockets {
                    pushed |= send(ws, &frame).is_ok() && live;
                }
            }
            if live && !pushed {
                failed_from = Some(a.seq);
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
}

fn settle(r: Result<Result<Stored, String>, oneshot::Canceled>) -> worker::Result<Stored> {
    match r {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(worker::Error::RustError(e)),
        Err(_) => Err(worker::Error::RustError("log write abandoned".into())),
    }
}

/// The `msg` frame of a new entry for v1 sockets.
fn v1_frame(seq: u64, e: &NewEntry) -> String {
    let kind = match e.kind {
        Kind::Received => EntryKind::In,
        Kind::Sent => EntryKind::Out,
        Kind::System => EntryKind::Sys,
    };
    v1::msg(seq, kind, e.peer.as_ref().map(|p| p.as_str()), &e.id, &e.body)
}
