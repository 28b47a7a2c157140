//! Inbox shards (issue 25 part 2) in the core, natively: a batch from a
//! shard applied by the real [`Mailbox`] over a user's log (`rusqlite`),
//! as the user's object applies it ([`fanin::apply_batch`]).
//!
//! - each delivery gets the answer a direct hop would have, with the seq
//!   the user's log gave, in the batch's order;
//! - a retry inside one batch is stored once;
//! - a batch sent again after its answer was lost stores no delivery with
//!   a cmid twice (they are answered as duplicates, with their first seq);
//! - a delivery to another user in a batch is refused alone.

mod support;

use edge_chat::fanin::{self, encode_batch, parse_batch, BatchItem};
use edge_chat::internal::{Answer, Delivery, Outcome};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Config, Io, Mailbox, Mode, Sockets, Stored};
use edge_chat::message::{new_id, Kind};
use edge_chat::user::UserId;
use support::sqlite::Lite;

const T0: u64 = 1_800_000_000_000;

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// No socket open: every entry waits in the offline queue.
struct Offline;

impl Sockets for Offline {
    type Socket = ();
    fn open(&self, _: Mode) -> Vec<()> {
        Vec::new()
    }
    fn count(&self) -> usize {
        0
    }
    fn send(&self, _: &(), _: &str) -> bool {
        false
    }
}

fn chat(from: &str, id: &str, dedup: bool) -> (Delivery, String) {
    let d = Delivery {
        owner: uid("star"),
        kind: Kind::Received,
        id: id.into(),
        time_ms: T0,
        peer: Some(uid(from)),
        dedup,
        backend: false,
        key: None,
    };
    (d, format!(r#"{{"fromUser":"{from}","toUser":"star","message":"{id}"}}"#))
}

/// Applies a batch body as the user's object does: decide, append the
/// entries together (the first at once, the rest in one group write), answer.
fn apply(mb: &mut Mailbox, log: &Log<Lite>, body: &str) -> Vec<Answer> {
    let io = Io { log, sockets: &Offline, now: T0 };
    let items = parse_batch(&uid("star"), body).unwrap();
    let mut batch = fanin::apply_batch(mb, &io, items);
    assert!(batch.failures.is_empty());
    let mut stored: Vec<Option<Stored>> = Vec::new();
    let mut waiting = 0;
    for entry in std::mem::take(&mut batch.entries) {
        match mb.append(&io, entry) {
            Appended::Now(s) => stored.push(s.ok()),
            Appended::Wait { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        stored.extend(mb.commit(&io).into_iter().map(|(_, s)| s.ok()));
    }
    mb.cooled();
    batch.answers(&stored)
}

fn seqs(answers: &[Answer]) -> Vec<(u16, Option<u64>, bool)> {
    answers.iter().map(|a| (a.status(), a.seq, a.duplicate)).collect()
}

#[test]
fn a_batch_is_applied_in_order_once_and_again_without_repeats() {
    let log = Lite::log();
    let mut mb = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    mb.load(&Io { log: &log, sockets: &Offline, now: T0 }, &uid("star")).unwrap();
    let (a1, a2, b1) = (new_id(1, 1), new_id(2, 2), new_id(3, 3));
    let batch = encode_batch(&[
        chat("alice", &a1, true),
        chat("bob", &b1, false),
        chat("alice", &a2, true),
        // Alice's retry of her first, overtaking its answer.
        chat("alice", &a1, true),
    ]);
    let first = apply(&mut mb, &log, &batch);
    assert_eq!(
        seqs(&first),
        vec![(202, Some(1), false), (202, Some(2), false), (202, Some(3), false), (202, Some(1), true)],
        "seqs from the user's log, in the batch's order; the retry stored once"
    );
    // The shard's answer was lost and the same batch comes again: the
    // deliveries with a cmid are duplicates with their first seqs.
    let again = apply(&mut mb, &log, &batch);
    assert_eq!(again[0].seq, Some(1));
    assert!(again[0].duplicate);
    assert_eq!(again[2].seq, Some(3));
    assert!(again[2].duplicate);
    assert!(again[3].duplicate);
    assert_eq!(again[0].outcome, Outcome::Stored { pushed: false });
    // Bob's had no cmid: stored again, as a direct hop sent again would be.
    assert_eq!((again[1].seq, again[1].duplicate), (Some(4), false));
    assert_eq!(mb.head(), 4);
}

#[test]
fn a_delivery_to_another_user_is_refused_alone() {
    let log = Lite::log();
    let mut mb = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    mb.load(&Io { log: &log, sockets: &Offline, now: T0 }, &uid("star")).unwrap();
    let (mut other, body) = chat("alice", &new_id(9, 9), false);
    other.owner = uid("someone-else");
    let batch = encode_batch(&[chat("alice", &new_id(8, 8), false), (other, body)]);
    assert!(matches!(parse_batch(&uid("star"), &batch).unwrap()[1], BatchItem::Bad));
    let answers = apply(&mut mb, &log, &batch);
    assert_eq!(seqs(&answers), vec![(202, Some(1), false), (400, None, false)]);
}
