//! Presence and edits in the core, natively: the mailbox's presence
//! decisions (one change per flip, told to live watchers only, hidden from
//! strangers and the blocked), an op rewriting the message in the
//! recipient's log, and the D1 upsert that keeps history at the current
//! state whatever order (or how often) rows arrive, as a property of the
//! real SQL.

mod support;

use std::cell::Cell;

use edge_chat::blocks::Change;
use edge_chat::internal::{Delivery, Watch};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Io, Mailbox, Mode, Sockets};
use edge_chat::message::Kind;
use edge_chat::presence::Presence;
use edge_chat::user::UserId;
use proptest::prelude::*;
use serde_json::{json, Value};
use support::sqlite::Lite;

/// Sockets that only count (frames are not looked at here).
struct Count(Cell<usize>);

impl Sockets for Count {
    type Socket = ();
    fn open(&self, _: Mode) -> Vec<()> {
        vec![(); self.0.get()]
    }
    fn count(&self) -> usize {
        self.0.get()
    }
    fn send(&self, _: &(), _: &str) -> bool {
        true
    }
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

struct User {
    log: Log<Lite>,
    mb: Mailbox,
    sockets: Count,
    now: u64,
}

impl User {
    fn new(id: &str) -> User {
        let limits = Limits { presence_grace_ms: 10_000, watch_ttl_ms: 60_000, ..Limits::default() };
        let u = User {
            log: Lite::log(),
            mb: Mailbox::new(Config::new(limits, 500, 1000)),
            sockets: Count(Cell::new(0)),
            now: 1_000_000,
        };
        let mut u = u;
        let io = Io { log: &u.log, sockets: &u.sockets, now: u.now };
        u.mb.load(&io, &uid(id)).unwrap();
        u
    }

    /// Stores an entry delivered from `peer` (a chat, or an op on one).
    fn deliver(&mut self, peer: &str, kind: Kind, id: &str, body: Value) {
        let d = Delivery {
            owner: uid("me"),
            kind,
            id: id.into(),
            time_ms: self.now,
            peer: Some(uid(peer)),
            dedup: false,
            backend: false,
            key: None,
        };
        let io = Io { log: &self.log, sockets: &self.sockets, now: self.now };
        let DeliverStep::Append(entry) = self.mb.deliver(&io, d, body.to_string()).unwrap() else { panic!("stored") };
        assert!(matches!(self.mb.append(&io, entry), Appended::Now(Ok(_))));
        self.mb.cooled();
    }

    /// The presence notices the last calls asked for, as (watcher, presence).
    fn told(&mut self) -> Vec<(String, Presence)> {
        support::presence_told(&mut self.mb)
    }

    fn watch(&mut self, from: &str) -> Presence {
        let w = Watch { owner: uid("me"), from: uid(from), ttl_ms: 60_000 };
        let io = Io { log: &self.log, sockets: &self.sockets, now: self.now };
        self.mb.watch(&io, &w).unwrap()
    }

    fn open(&mut self) {
        self.sockets.0.set(self.sockets.0.get() + 1);
        let io = Io { log: &self.log, sockets: &self.sockets, now: self.now };
        self.mb.socket_opened(&io).unwrap();
    }

    /// A socket closes (the runtime still lists it while the event runs).
    fn close(&mut self) {
        let io = Io { log: &self.log, sockets: &self.sockets, now: self.now };
        self.mb.socket_closed(&io).unwrap();
        self.sockets.0.set(self.sockets.0.get() - 1);
    }

    /// Time passes to `at`; the alarm runs if it is due.
    fn alarm(&mut self, at: u64) {
        self.now = at;
        if self.mb.alarm_fired(at).presence {
            let io = Io { log: &self.log, sockets: &self.sockets, now: self.now };
            self.mb.presence_due(&io).unwrap();
        }
    }
}

#[test]
fn a_presence_change_is_told_once_to_each_live_watcher() {
    let mut me = User::new("me");
    let id = edge_chat::message::new_id(1, 1);
    me.deliver("friend", Kind::Received, &id, json!({"message": "hi"}));
    me.mb.take_effects();
    assert_eq!(me.watch("friend"), Presence { online: false, last_seen: None }, "never seen");
    assert_eq!(me.watch("stranger"), Presence::HIDDEN);

    me.open();
    assert_eq!(me.told(), vec![("friend".into(), Presence { online: true, last_seen: Some(960_000) })]);
    me.open();
    assert!(me.told().is_empty(), "a second socket is no change");
    me.close();
    me.close();
    me.told();
    me.alarm(me.now + 5_000);
    assert!(me.told().is_empty(), "within the grace");
    me.alarm(me.now + 5_000);
    let told = me.told();
    assert_eq!(told, vec![("friend".into(), Presence { online: false, last_seen: Some(960_000) })]);
    assert_eq!(me.watch("friend"), Presence { online: false, last_seen: Some(960_000) });

    // A reconnect within the grace changes nothing.
    me.open();
    me.told();
    me.close();
    me.now += 3_000;
    me.open();
    assert!(me.told().is_empty());
    me.alarm(me.now + 20_000);
    assert!(me.told().is_empty(), "a socket is open again");

    // Past the watch's life, a change is told to nobody.
    me.close();
    me.alarm(me.now + 120_000);
    assert!(me.told().is_empty(), "the watch lapsed");
}

#[test]
fn a_close_nobody_watches_is_stored_at_once_and_sets_no_alarm() {
    let mut me = User::new("me");
    let id = edge_chat::message::new_id(1, 1);
    me.deliver("friend", Kind::Received, &id, json!({"message": "hi"}));
    me.mb.take_effects();
    me.open();
    me.mb.take_effects();
    let changes = |u: &User| u.log.sql().0.total_changes();
    let before = changes(&me);
    me.close();
    assert_eq!(changes(&me) - before, 1, "the close, stored at once");
    assert!(!me.mb.alarm_fired(me.now + 60_000).presence, "no grace job without watchers");
    // A pull within the grace still shows online; after it, last seen.
    me.now += 5_000;
    let pull = |u: &mut User| {
        let w = Watch { owner: uid("me"), from: uid("friend"), ttl_ms: 0 };
        let io = Io { log: &u.log, sockets: &u.sockets, now: u.now };
        u.mb.watch(&io, &w).unwrap()
    };
    assert!(pull(&mut me).online, "within the grace");
    me.now += 10_000;
    assert_eq!(pull(&mut me), Presence { online: false, last_seen: Some(960_000) });
    // A reconnect is online again (one row), and a watcher now makes the
    // next close go through the grace alarm that tells it.
    me.open();
    assert!(pull(&mut me).online);
    assert_eq!(me.watch("friend"), Presence { online: true, last_seen: Some(960_000) });
    me.close();
    me.mb.take_effects();
    me.alarm(me.now + 11_000);
    assert_eq!(
        me.told(),
        vec![("friend".into(), Presence { online: false, last_seen: Some(960_000) })],
        "watched: told at the grace's end"
    );
}

#[test]
fn hidden_or_blocked_presence_looks_never_seen_and_is_not_told() {
    let mut me = User::new("me");
    me.deliver("a", Kind::Received, &edge_chat::message::new_id(1, 1), json!({"message": "hi"}));
    me.deliver("b", Kind::Received, &edge_chat::message::new_id(2, 2), json!({"message": "hi"}));
    me.open();
    assert!(me.watch("a").online && me.watch("b").online);
    let io = Io { log: &me.log, sockets: &me.sockets, now: me.now };
    me.mb.change_blocks(&io, Change::Block(uid("b"))).unwrap().unwrap();
    assert_eq!(me.watch("b"), Presence::HIDDEN, "blocked");
    me.close();
    me.told();
    me.alarm(me.now + 10_000);
    assert_eq!(me.told().into_iter().map(|(w, _)| w).collect::<Vec<_>>(), vec!["a".to_string()], "not the blocked one");
    let io = Io { log: &me.log, sockets: &me.sockets, now: me.now };
    me.mb.change_settings(&io, true).unwrap();
    assert_eq!(me.told(), vec![("a".into(), Presence::HIDDEN)], "hiding is told as never seen");
    me.open();
    assert!(me.told().is_empty(), "nothing while hidden");
    assert_eq!(me.watch("a"), Presence::HIDDEN);
}

#[test]
fn an_op_rewrites_its_message_in_the_recipients_log_only_within_its_conversation() {
    let mut me = User::new("me");
    let (m1, m2) = (edge_chat::message::new_id(1, 1), edge_chat::message::new_id(2, 2));
    me.deliver("a", Kind::Received, &m1, json!({"message": "one", "id": m1}));
    me.deliver("b", Kind::Received, &m2, json!({"message": "two", "id": m2}));
    let edit = json!({"target": m1, "body": {"message": "uno", "id": m1, "edit_version": 1}});
    me.deliver("a", Kind::EditIn, &edge_chat::message::new_id(3, 3), edit);
    // b cannot edit a's message, even naming it.
    let forged = json!({"target": m1, "body": {"message": "forged", "deleted_at": "x"}});
    me.deliver("b", Kind::EditIn, &edge_chat::message::new_id(4, 4), forged);
    let body: Value = serde_json::from_str(&me.log.find(&m1).unwrap().unwrap().body).unwrap();
    assert_eq!((body["message"].as_str(), body["edit_version"].as_u64()), (Some("uno"), Some(1)));
    assert_eq!(me.log.unread_state("a").unwrap().0, 1);

    let delete = json!({"target": m1, "for": "everyone", "body": {"id": m1, "deleted_at": "t"}});
    me.deliver("a", Kind::DeleteIn, &edge_chat::message::new_id(5, 5), delete);
    assert_eq!(me.log.unread_state("a").unwrap().0, 0, "a deleted unread message no longer counts");
    assert_eq!(me.log.total_unread().unwrap(), 1);
}

/// A history partition in SQLite with the real DDL and upsert.
fn history_table() -> rusqlite::Connection {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&edge_chat::history::partition_ddl("history_1")).unwrap();
    db
}

fn row(body: &Value) -> Value {
    json!(["u:a|b", "m1", "a", "b", 1, 5, body.to_string(), 2, null, null])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Rows of one message (its original, edits, a tombstone), written in
    /// any order and any number of times, end at the newest state.
    #[test]
    fn history_ends_at_the_current_state_whatever_the_order(
        order in proptest::collection::vec(0usize..5, 1..12),
        deleted in any::<bool>(),
    ) {
        let versions: Vec<Value> = vec![
            json!({"message": "v0"}),
            json!({"message": "v1", "edit_version": 1}),
            json!({"message": "v2", "edit_version": 2}),
            json!({"message": "v3", "edit_version": 3}),
            json!({"deleted_at": "t"}),
        ];
        let db = history_table();
        let sql = edge_chat::history::write_sql("history_1");
        let used: Vec<usize> = order.into_iter().filter(|&i| deleted || i < 4).collect();
        for &i in &used {
            db.execute(&sql, [Value::from(vec![row(&versions[i])]).to_string()]).unwrap();
        }
        let body: String = db.query_row("SELECT body FROM history_1 WHERE id = 'm1'", [], |r| r.get(0)).unwrap_or_default();
        match used.iter().max() {
            None => prop_assert_eq!(body, ""),
            Some(&newest) => prop_assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), versions[newest].clone()),
        }
    }
}
