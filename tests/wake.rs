//! What a user's object keeps across an eviction or a runtime restart
//! (issue 24, items 13 and 22), natively: the real `Mailbox` over the log's
//! SQL, a new `Mailbox` over the same log standing for the next instance.
//! A device's acks are saved with its socket's close; a stored "online"
//! whose sockets a restart dropped without close events turns offline when
//! the object wakes.

mod support;

use std::cell::{Cell, RefCell};

use edge_chat::internal::{Delivery, Watch};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Io, Mailbox, Mode, Sockets, V1Step};
use edge_chat::message::Kind;
use edge_chat::presence::Presence;
use serde_json::{json, Value};
use support::sqlite::Lite;
use support::uid;

/// `n` v1 sockets, all recording into one list of frames.
struct Socks {
    n: Cell<usize>,
    frames: RefCell<Vec<Value>>,
}

impl Sockets for Socks {
    type Socket = ();
    fn open(&self, mode: Mode) -> Vec<()> {
        if mode == Mode::V1 {
            vec![(); self.n.get()]
        } else {
            Vec::new()
        }
    }
    fn count(&self) -> usize {
        self.n.get()
    }
    fn send(&self, _: &(), text: &str) -> bool {
        self.frames.borrow_mut().push(serde_json::from_str(text).expect("frames are JSON"));
        true
    }
}

fn mailbox() -> Mailbox {
    Mailbox::new(Config::new(Limits { presence_grace_ms: 10_000, ..Limits::default() }, 500, 1000))
}

/// One user's log, served by one instance of the object at a time.
struct Object {
    log: Log<Lite>,
    mb: Mailbox,
    socks: Socks,
    now: u64,
}

impl Object {
    fn new() -> Object {
        let mut o = Object {
            log: Lite::log(),
            mb: mailbox(),
            socks: Socks { n: Cell::new(0), frames: RefCell::new(Vec::new()) },
            now: 10 * 60_000,
        };
        o.wake();
        o
    }

    /// A new instance over the same log (the old one's memory is gone):
    /// loaded, then told which sockets survived, as the platform does.
    fn restart(&mut self, surviving: usize) {
        self.mb = mailbox();
        self.socks.n.set(surviving);
        self.wake();
    }

    fn wake(&mut self) {
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        self.mb.load(&io, &uid("me")).unwrap();
        self.mb.woke(&io).unwrap();
    }

    /// A v1 socket of `device` is accepted.
    fn connect(&mut self, device: &str) -> Value {
        self.socks.frames.borrow_mut().clear();
        self.socks.n.set(self.socks.n.get() + 1);
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        self.mb.connect_v1(&io, &(), device, None).unwrap();
        self.mb.socket_opened(&io).unwrap();
        self.socks.frames.borrow()[0].clone()
    }

    /// The socket of `device` closes (listed while the event runs).
    fn close(&mut self, device: &str) {
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        self.mb.device_closed(&io, device).unwrap();
        self.mb.socket_closed(&io).unwrap();
        self.socks.n.set(self.socks.n.get() - 1);
    }

    fn receive(&mut self, peer: &str, n: u64) {
        let id = edge_chat::message::new_id(n, n);
        let d = Delivery {
            owner: uid("me"),
            kind: Kind::Received,
            id,
            time_ms: self.now,
            peer: Some(uid(peer)),
            dedup: false,
            backend: false,
            key: None,
        };
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        let DeliverStep::Append(entry) = self.mb.deliver(&io, d, json!({"message": "hi"}).to_string()).unwrap() else {
            panic!("stored")
        };
        assert!(matches!(self.mb.append(&io, entry), Appended::Now(Ok(_))));
        self.mb.cooled();
    }

    fn frame(&mut self, device: &str, text: &str) -> V1Step {
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        self.mb.v1_frame(&io, device, u64::MAX, text).unwrap()
    }

    fn watch(&mut self, from: &str, ttl_ms: u64) -> Presence {
        let w = Watch { owner: uid("me"), from: uid(from), ttl_ms };
        let io = Io { log: &self.log, sockets: &self.socks, now: self.now };
        self.mb.watch(&io, &w).unwrap()
    }

    /// The presence notices asked for since the last call.
    fn told(&mut self) -> Vec<(String, Presence)> {
        support::presence_told(&mut self.mb)
    }
}

#[test]
fn acks_saved_with_the_close_survive_a_restart_before_the_archive_pass() {
    let mut o = Object::new();
    assert_eq!(o.connect("phone")["since"], 0);
    for n in 1..=3 {
        o.receive("friend", n);
    }
    assert_eq!(o.frame("phone", r#"{"op":"ack","up_to":3}"#), V1Step::Done);
    let changes = |o: &Object| o.log.sql().0.total_changes();
    let before = changes(&o);
    o.close("phone");
    // The device's row, and the close's last-seen row (nobody watches).
    assert_eq!(changes(&o) - before, 2);
    o.restart(0);
    assert_eq!(o.connect("phone")["since"], 3, "resumed after what it acked");

    // A close with nothing new acked writes no device row.
    let before = changes(&o);
    o.close("phone");
    assert_eq!(changes(&o) - before, 1, "only the last-seen row");
}

#[test]
fn a_restart_that_dropped_every_socket_leaves_the_user_offline_since_their_last_sign_of_life() {
    let mut o = Object::new();
    o.receive("friend", 1);
    o.connect("phone");
    let connected = o.now;
    assert_eq!(o.watch("friend", 60_000), Presence { online: true, last_seen: Some(connected) });
    o.told();

    // Half a minute later (the watch lives on) the runtime restarts; no
    // close event ever comes.
    o.now += 30_000;
    o.restart(0);
    let offline = Presence { online: false, last_seen: Some(connected) };
    assert_eq!(o.told(), vec![("friend".to_string(), offline)], "the live watcher is told");
    assert_eq!(o.watch("friend", 0), offline, "a pull shows when they were last seen");
    o.restart(0);
    assert!(o.told().is_empty(), "checked once: nothing more to change");

    // Coming back is a change again.
    o.now += 60_000;
    o.watch("friend", 60_000);
    o.connect("phone");
    assert_eq!(o.told(), vec![("friend".to_string(), Presence { online: true, last_seen: Some(o.now - 30_000) })]);
}

#[test]
fn a_wake_with_a_surviving_socket_changes_nothing() {
    let mut o = Object::new();
    o.receive("friend", 1);
    o.connect("phone");
    o.watch("friend", 60_000);
    o.told();
    o.restart(1);
    assert!(o.told().is_empty());
    assert!(o.watch("friend", 0).online);
}
