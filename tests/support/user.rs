//! A user's object in the native tests: the real `Mailbox` over the log's
//! own SQL, with one v1 device (online or not), at a clock the test moves.

use edge_chat::log::Log;
use edge_chat::mailbox::{Config, Io, Mailbox};
use edge_chat::user::UserId;

use super::device::Device;
use super::sqlite::Lite;

pub struct User {
    pub log: Log<Lite>,
    pub mb: Mailbox,
    pub device: Device,
    pub id: UserId,
    pub now: u64,
}

impl User {
    /// `id` under `config` at `now`, loaded, its device connected when online.
    pub fn start(id: &str, config: Config, online: bool, now: u64) -> User {
        let mut u =
            User { log: Lite::log(), mb: Mailbox::new(config), device: Device::new(online), id: super::uid(id), now };
        u.load();
        u
    }

    /// The object wakes: its mailbox loads the log, and the device connects
    /// again when it is online.
    pub fn load(&mut self) {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        self.mb.load(&io, &self.id).expect("the log loads");
        if self.device.1 {
            self.mb.connect_v1(&io, &(), "phone", None).expect("the device connects");
        }
    }
}
