//! The `chat.v1` session of a mailbox: the handshake and replay, the client's
//! requests, device acks and the receipts they produce, typing, and the
//! conversation list.

use super::{send, Device, Error, Io, Mailbox, Mode, Notice, SocketRefused, Sockets};
use crate::blocks::{BlockError, Change};
use crate::history::{self, PageQuery};
use crate::inbox::Resume;
use crate::internal::{Receipt, Typing};
use crate::log::Sql;
use crate::message::{derived_id, Chat};
use crate::metrics::{incr, Counter};
use crate::protocol::v1::{self, close, EntryKind, ReceiptKind, RequestId, V1Error, V1Frame, Welcome};
use crate::user::UserId;

/// What a v1 frame needs.
#[derive(Debug, PartialEq)]
pub enum V1Step {
    /// Nothing to answer.
    Done,
    Reply(String),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
    /// Send this chat ([`Mailbox::plan_send`]), then answer with
    /// [`Mailbox::v1_sent`].
    Send {
        re: RequestId,
        chat: Chat,
        mid: String,
        cmid: String,
    },
    /// Archive, read this page from D1, and answer it as a `history` frame.
    History {
        re: RequestId,
        query: PageQuery,
    },
    /// Plan this op ([`Mailbox::plan_edit`]), carry it out as a send, then
    /// answer with [`Mailbox::v1_sent`].
    Edit {
        re: RequestId,
        target: String,
        op: crate::edits::EditOp,
        mid: String,
        cmid: String,
    },
    /// Ask `peer`'s object for their presence (and watch it): answer with a
    /// `presence` frame.
    Watch {
        re: RequestId,
        peer: UserId,
    },
    /// Pass this request to its group's object and answer with a `group` frame.
    Group {
        re: RequestId,
        request: crate::group::calls::Request,
    },
}

impl Mailbox {
    /// Whether a v1 socket for `device` may open.
    pub fn admit_v1(&self, device: &str, open: usize) -> Result<(), SocketRefused> {
        if UserId::parse(device).is_err() {
            let message = "device must be 1 to 64 of letters, digits, _ - . @".to_owned();
            return Err(SocketRefused { status: 400, message });
        }
        self.admit_socket(open)
    }

    /// A new v1 socket, just accepted: `welcome`, then every entry after
    /// `since` (or after what this device last acknowledged), then live
    /// entries. The caller awaits nothing in between, so nothing can come
    /// between the replay and the live stream.
    pub fn connect_v1<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        socket: &W::Socket,
        device: &str,
        since: Option<u64>,
    ) -> Result<(), Error> {
        self.expire_queue(io)?;
        let life = self.life()?;
        let head = life.inbox.head();
        let oldest = io.log.oldest()?.unwrap_or(head + 1);
        let known = life.devices.get(device).map(|d| d.acked);
        let Resume { start, recovered } = life.inbox.resume(oldest, since, known);
        let blocks = v1::BlockLists::of(&life.blocks, io.now);
        let limits = &self.config.limits;
        let settings = self.settings();
        let welcome = Welcome { user: &life.owner, device, head, since: start, recovered, limits, blocks, settings };
        send(io.sockets, socket, &welcome.encode());
        io.log.entries_after(start, |e| {
            send(io.sockets, socket, &v1::msg(e.seq, EntryKind::of(e.kind), e.peer.as_deref(), &e.id, &e.body))
        })?;
        // The user now has every entry: those up to `start` this device
        // processed before, the rest were just written to it. Nothing is left
        // to replay to a legacy socket.
        if let Some(first) = life.inbox.first_unsent() {
            io.log.mark_sent(first, head)?;
            self.replayed(io, first, head, None)?;
        }
        // Saved now, not at the next archive pass: an object evicted before
        // then would forget the device, stop holding entries for it, and
        // resume it at the head.
        let life = self.life_mut()?;
        let d = life.devices.entry(device.to_owned()).or_insert(Device { acked: start, seen: 0, dirty: true });
        d.seen = io.now;
        d.dirty = false;
        io.log.save_device(device, d.acked, d.seen)?;
        self.want_archive(io.now);
        Ok(())
    }

    /// One frame from a v1 socket of `device` whose token expires at `exp` (s).
    pub fn v1_frame<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        device: &str,
        exp: u64,
        text: &str,
    ) -> Result<V1Step, Error> {
        if crate::auth::token_expired(exp, io.now) {
            return Ok(V1Step::Close(close::TOKEN_EXPIRED, "token expired"));
        }
        let owner = self.life()?.owner.clone();
        let frame = match v1::parse(text, self.config.limits.frame_bytes) {
            Ok(f) => f,
            Err(r) => {
                if r.error == V1Error::TooLarge {
                    incr(Counter::RefusedFrame);
                }
                return Ok(V1Step::Reply(v1::error(r.re.as_ref(), r.error)));
            }
        };
        Ok(match frame {
            V1Frame::Heartbeat => V1Step::Reply(crate::protocol::legacy::HEARTBEAT.to_owned()),
            V1Frame::Send { id, to, cmid, body } => {
                if let Some(reply) = self.admit_write(io, &id, &cmid)? {
                    return Ok(V1Step::Reply(reply));
                }
                let mid = derived_id("send", owner.as_str(), &cmid);
                V1Step::Send { re: id, chat: Chat { from: owner, to, fields: body }, mid, cmid }
            }
            V1Frame::Ack { up_to } => {
                self.ack(io, device, up_to)?;
                V1Step::Done
            }
            V1Frame::Read { id, peer, up_to } => V1Step::Reply(self.read(io, &owner, &id, &peer, up_to)?),
            V1Frame::History { id, peer, before, after, limit } => {
                match history::page_limit(limit, self.config.limits.history_page) {
                    Ok(limit) => match self.admit_read(io.now) {
                        Ok(()) => V1Step::History { re: id, query: PageQuery { limit, before, after, peer } },
                        Err(retry_after_ms) => {
                            V1Step::Reply(v1::error(Some(&id), V1Error::RateLimited { retry_after_ms }))
                        }
                    },
                    Err(_) => {
                        incr(Counter::RefusedPage);
                        V1Step::Reply(v1::error(Some(&id), V1Error::BadField("limit")))
                    }
                }
            }
            V1Frame::Blocks { id, change } => {
                let field = match change {
                    Change::Block(_) | Change::Unblock(_) => "user",
                    _ => "peer",
                };
                match self.change_blocks(io, change)? {
                    Ok(()) => V1Step::Reply(v1::ok(&id)),
                    Err(BlockError::Full { .. }) => V1Step::Reply(v1::error(Some(&id), V1Error::BlocksFull)),
                    Err(BlockError::Yourself) => V1Step::Reply(v1::error(Some(&id), V1Error::BadField(field))),
                }
            }
            V1Frame::Edit { id, mid, cmid, op } => {
                if let Some(reply) = self.admit_write(io, &id, &cmid)? {
                    return Ok(V1Step::Reply(reply));
                }
                let scope = if matches!(op, crate::edits::EditOp::Edit(_)) { "edit" } else { "delete" };
                let op_mid = derived_id(scope, owner.as_str(), &cmid);
                V1Step::Edit { re: id, target: mid, op, mid: op_mid, cmid }
            }
            V1Frame::Group { id, fields } => {
                // Unique per user and per call: the id names the user's object.
                self.groups_named += 1;
                let nonce =
                    crate::message::derived_id("group", owner.as_str(), &format!("{}.{}", io.now, self.groups_named));
                let fresh = crate::group::GroupId::fresh(u64::from_str_radix(&nonce[..16], 16).unwrap_or(io.now));
                match crate::group::calls::from_frame(&fields, &owner, fresh) {
                    // Sends count against the send rate, as chats do; history
                    // pages against the read rate.
                    Ok(request) => match self.admit_group(io.now, &request.call) {
                        Ok(()) => V1Step::Group { re: id, request },
                        Err(l) => {
                            let retry_after_ms = l.retry_after_ms();
                            V1Step::Reply(v1::error(Some(&id), V1Error::RateLimited { retry_after_ms }))
                        }
                    },
                    Err(e) => {
                        let code = if e.status() == 404 { "not_found" } else { "bad_field" };
                        let body = serde_json::json!({ "error": e.message, "code": code }).to_string();
                        V1Step::Reply(v1::group_reply(&id, e.status(), &body))
                    }
                }
            }
            V1Frame::Watch { id, peer } => match self.admit_read(io.now) {
                Ok(()) => V1Step::Watch { re: id, peer },
                Err(retry_after_ms) => V1Step::Reply(v1::error(Some(&id), V1Error::RateLimited { retry_after_ms })),
            },
            V1Frame::Settings { id, change } => {
                self.apply_settings(io, change)?;
                V1Step::Reply(v1::ok(&id))
            }
            V1Frame::Typing { to, active } => {
                if self.typing_allowed(io, &to)? {
                    self.notify(Notice::Typing(Typing { owner: to, from: owner, active }));
                } else {
                    incr(Counter::DroppedTyping);
                }
                V1Step::Done
            }
        })
    }

    /// Whether a `send`, `edit` or `delete` with `cmid` goes ahead: `Some`
    /// is the reply instead (the first one's result for a repeat, or a
    /// refusal). Admitted, it counts as in flight until [`Mailbox::v1_sent`].
    fn admit_write<S: Sql, W>(&mut self, io: &Io<S, W>, id: &RequestId, cmid: &str) -> Result<Option<String>, Error> {
        if let Some((mid, seq)) = io.log.sent_before(cmid)? {
            return Ok(Some(v1::sent(id, &mid, seq, true)));
        }
        if let Err(r) = self.admit_send(io.now) {
            return Ok(Some(v1::error(Some(id), V1Error::from_refusal(r))));
        }
        // A repeat while the first is still in flight is told to retry.
        if !self.inflight.insert(cmid.to_owned()) {
            return Ok(Some(v1::error(Some(id), V1Error::Unavailable)));
        }
        Ok(None)
    }

    /// The reply to a v1 `send`, `edit` or `delete` once it was stored (or refused).
    pub fn v1_sent(&mut self, re: &RequestId, mid: &str, cmid: &str, result: Result<u64, V1Error>) -> String {
        self.inflight.remove(cmid);
        match result {
            Ok(seq) => v1::sent(re, mid, seq, false),
            Err(e) => v1::error(Some(re), e),
        }
    }

    /// `ack`: the device processed the log up to `up_to`. Chats it moves past
    /// for the first time (on any device) earn their senders a receipt.
    fn ack<S: Sql, W>(&mut self, io: &Io<S, W>, device: &str, up_to: u64) -> Result<(), Error> {
        let life = self.life_mut()?;
        let up_to = up_to.min(life.inbox.head());
        let before = life.devices.values().map(|d| d.acked).max().unwrap_or(0);
        let d = life.devices.entry(device.to_owned()).or_insert(Device { acked: 0, seen: 0, dirty: true });
        if up_to <= d.acked {
            return Ok(());
        }
        *d = Device { acked: up_to, seen: io.now, dirty: true };
        let owner = life.owner.clone();
        if self.push_pending() {
            // Saved now: an evicted object must not forget the ack and push
            // what the user saw (one row; only while a push may be due).
            let life = self.life_mut()?;
            if let Some(d) = life.devices.get_mut(device) {
                io.log.save_device(device, d.acked, d.seen)?;
                d.dirty = false;
            }
        }
        if up_to > before {
            for (peer, seq) in io.log.received_by_peer(before, up_to)? {
                let Ok(peer) = UserId::parse(&peer) else { continue };
                let r = Receipt { owner: peer, from: owner.clone(), read: false, up_to: seq };
                self.notify(Notice::Receipt(r));
            }
        }
        self.want_archive(io.now);
        Ok(())
    }

    /// A socket of `device` closed: its acks not saved yet are saved now (one
    /// row; none when a push or the archive pass saved them already), so an
    /// eviction or a runtime restart before the next archive pass cannot
    /// resume the device behind what it acked and send it all again.
    pub fn device_closed<S: Sql, W>(&mut self, io: &Io<S, W>, device: &str) -> Result<(), Error> {
        let life = self.life_mut()?;
        if let Some(d) = life.devices.get_mut(device).filter(|d| d.dirty) {
            io.log.save_device(device, d.acked, d.seen)?;
            d.dirty = false;
        }
        Ok(())
    }

    /// `read`: the conversation is read up to `up_to`; every device of the
    /// user learns the new unread count, and the peer gets a read receipt.
    fn read<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        owner: &UserId,
        id: &RequestId,
        peer: &UserId,
        up_to: u64,
    ) -> Result<String, Error> {
        let up_to = up_to.min(self.head());
        let Some((unread, read_up_to)) = io.log.mark_read(peer.as_str(), up_to)? else {
            return Ok(v1::error(Some(id), V1Error::BadField("peer")));
        };
        let frame = v1::unread(peer.as_str(), unread, read_up_to);
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
        self.push_read(io.now, super::push::ReadConv::Chat(peer.clone()));
        if peer != owner {
            let r = Receipt { owner: peer.clone(), from: owner.clone(), read: true, up_to: read_up_to };
            self.notify(Notice::Receipt(r));
        }
        Ok(v1::ok(id))
    }

    /// A peer received or read this user's messages: shown on the v1 sockets.
    pub fn receipt<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, r: &Receipt) -> Result<(), Error> {
        self.load(io, &r.owner)?;
        if self.blocked(&r.from) {
            return Ok(());
        }
        if let Some(up_to) = io.log.peer_receipt(r.from.as_str(), r.read, r.up_to)? {
            let kind = if r.read { ReceiptKind::Read } else { ReceiptKind::Delivered };
            let frame = v1::receipt(r.from.as_str(), kind, up_to);
            for ws in io.sockets.open(Mode::V1) {
                send(io.sockets, &ws, &frame);
            }
        }
        Ok(())
    }

    /// A peer is typing: shown on this user's live v1 sockets, never stored
    /// (nor shown from a blocked peer).
    pub fn typing<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, t: &Typing) -> Result<(), Error> {
        self.load(io, &t.owner)?;
        if self.blocked(&t.from) {
            return Ok(());
        }
        let frame = v1::typing(t.from.as_str(), t.active);
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
        Ok(())
    }

    /// `GET /v1/conversations`: newest activity first, with unread counts
    /// and each newest message as the user sees it. The peers' presence is
    /// the platform's to gather (a hop each) before [`v1::conversations`].
    pub fn conversations<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        uid: &UserId,
        q: &PageQuery,
    ) -> Result<Vec<crate::log::Conversation>, Error> {
        self.load(io, uid)?;
        // Any cursor past every seq (up to 2^64 - 1) is "from the newest",
        // as for history; SQLite's integers would wrap it.
        const NEWEST: u64 = u64::MAX >> 11;
        let mut rows = io.log.conversations(uid, q.before.unwrap_or(NEWEST).min(NEWEST), q.limit + 1)?;
        let mids: Vec<&str> = rows.iter().map(|c| c.last_mid.as_str()).collect();
        let hidden = io.log.hidden(&mids)?;
        for c in rows.iter_mut() {
            if let Some((_, at)) = hidden.iter().find(|(mid, _)| *mid == c.last_mid) {
                c.last_body = crate::edits::hidden_body(&c.last_body, *at);
            }
        }
        Ok(rows)
    }
}
