//! A user's devices as the mailbox tests see them: one v1 socket that keeps
//! every frame it is sent, or none at all when the user is offline.

use std::cell::RefCell;

use edge_chat::mailbox::{Mode, Sockets};
use serde_json::Value;

/// The frames sent to the socket, and whether it is open.
pub struct Device(pub RefCell<Vec<Value>>, pub bool);

impl Device {
    pub fn new(online: bool) -> Device {
        Device(RefCell::new(Vec::new()), online)
    }

    pub fn online() -> Device {
        Device::new(true)
    }
}

impl Sockets for Device {
    type Socket = ();
    fn open(&self, mode: Mode) -> Vec<()> {
        if mode == Mode::V1 && self.1 {
            vec![()]
        } else {
            Vec::new()
        }
    }
    fn count(&self) -> usize {
        self.1 as usize
    }
    fn send(&self, _: &(), text: &str) -> bool {
        self.0.borrow_mut().push(serde_json::from_str(text).expect("frames are JSON"));
        true
    }
}
