//! Presence in a mailbox: sockets opening and closing turn into online and
//! offline (after a grace, by the alarm), a change goes to the live
//! watchers only, and a `watch` or a pull gets the presence as the asker
//! may see it ([`crate::presence`]).
//!
//! The state is one meta row (`seen`): written when the user comes online
//! and when they go offline, never per socket or per heartbeat.

use super::wake::Job;
use super::{send, Error, Io, Mailbox, Mode, Notice, Sockets};
use crate::internal::{PresenceNotice, Watch};
use crate::log::Sql;
use crate::presence::{self, minute, Presence, WATCHERS_MAX};
use crate::protocol::v1::{self as wire, Settings, SettingsChange};
use crate::user::UserId;

impl Mailbox {
    /// A socket of the user was accepted: they are online. Only a change
    /// (not a reconnect within the grace) is stored and told to watchers.
    pub fn socket_opened<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        self.closed_at = None;
        if self.life()?.seen == Some(0) {
            return Ok(());
        }
        io.log.set_last_seen(0)?;
        self.life_mut()?.seen = Some(0);
        self.publish(io, Presence { online: true, last_seen: Some(minute(io.now)) })
    }

    /// A socket closed: with none left (the closing one may still be
    /// listed), the grace starts. With live watchers, the alarm ends it and
    /// tells them. With none, there is nobody to tell: the close is stored
    /// at once (one row) and no alarm is set (a row and a run saved), and a
    /// pull within the grace still shows online (from the close time).
    pub fn socket_closed<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        if io.sockets.count() > 1 {
            return Ok(());
        }
        self.closed_at = Some(io.now);
        let online = self.life.as_ref().map(|l| l.seen == Some(0));
        if online == Some(true) && io.log.watchers(io.now)?.is_empty() {
            let last = minute(io.now).max(1);
            io.log.set_last_seen(last)?;
            self.life_mut()?.seen = Some(last);
            return Ok(());
        }
        self.want(io.now, Job::Presence, io.now.saturating_add(self.config.limits.presence_grace_ms));
        Ok(())
    }

    /// The object woke (its first event, before any socket is accepted): a
    /// stored "online" with no socket left and no close under way means a
    /// runtime restart dropped the sockets without close events. The user
    /// is offline since the newest sign of life the log keeps (a device's
    /// last connect or saved ack; now if none), stored (one row) and told
    /// to live watchers, so a pull shows a last seen (not "never seen") and
    /// the next connect is a change again. Checked once per wake.
    pub fn woke<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        if self.woke_checked {
            return Ok(());
        }
        // Checked only once loaded: the preamble loads first.
        self.life()?;
        self.woke_checked = true;
        let life = self.life()?;
        if life.seen != Some(0) || self.closed_at.is_some() || io.sockets.count() > 0 {
            return Ok(());
        }
        let newest = life.devices.values().map(|d| d.seen).filter(|&t| t > 0).max().unwrap_or(io.now);
        // Never 0, which means online.
        let last = minute(newest.min(io.now)).max(1);
        io.log.set_last_seen(last)?;
        self.life_mut()?.seen = Some(last);
        self.publish(io, Presence { online: false, last_seen: Some(last) })
    }

    /// The grace ended (the alarm): offline if no socket opened meanwhile.
    pub fn presence_due<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        if io.sockets.count() > 0 {
            self.closed_at = None;
            return Ok(());
        }
        if self.life()?.seen != Some(0) {
            return Ok(());
        }
        let grace = self.config.limits.presence_grace_ms;
        // Never 0, which means online.
        let last = minute(self.closed_at.take().unwrap_or(io.now.saturating_sub(grace))).max(1);
        io.log.set_last_seen(last)?;
        self.life_mut()?.seen = Some(last);
        self.publish(io, Presence { online: false, last_seen: Some(last) })
    }

    /// The user's presence now, as a peer who may see it sees it.
    fn presence_now<W: Sockets>(&self, sockets: &W, now: u64) -> Presence {
        let seen = self.life.as_ref().and_then(|l| l.seen);
        let grace = self.config.limits.presence_grace_ms;
        let in_grace = self.closed_at.is_some_and(|t| now < t.saturating_add(grace));
        let online = sockets.count() > 0 || (seen == Some(0) && self.closed_at.is_some()) || in_grace;
        presence::state(online, seen.filter(|&t| t > 0), now)
    }

    /// `watch` (or a pull, with no ttl) from `w.from`: the presence as they
    /// may see it; they are kept as a watcher (one row) only if they may.
    pub fn watch<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, w: &Watch) -> Result<Presence, Error> {
        self.load(io, &w.owner)?;
        let life = self.life()?;
        let me = w.from == life.owner;
        let contact = me || io.log.has_conversation(w.from.as_str())?;
        if !me && !presence::visible(life.hide_presence, life.blocks.is_blocked(&w.from), contact) {
            return Ok(Presence::HIDDEN);
        }
        if w.ttl_ms > 0 && !me && io.log.watcher_count()? < WATCHERS_MAX as u64 {
            io.log.watch(&w.from, io.now.saturating_add(w.ttl_ms))?;
            crate::metrics::incr(crate::metrics::Counter::Watches);
        }
        Ok(self.presence_now(io.sockets, io.now))
    }

    /// The user's own presence (their own conversation, their own watch).
    pub fn own_presence<W: Sockets>(&self, sockets: &W, now: u64) -> Presence {
        self.presence_now(sockets, now)
    }

    /// Tells the live watchers (one hop each) of a change, unless the user
    /// hides their presence or blocked the watcher.
    fn publish<S: Sql, W>(&mut self, io: &Io<S, W>, p: Presence) -> Result<(), Error> {
        if self.life()?.hide_presence {
            return Ok(());
        }
        self.tell_watchers(io, p)
    }

    fn tell_watchers<S: Sql, W>(&mut self, io: &Io<S, W>, presence: Presence) -> Result<(), Error> {
        let user = self.life()?.owner.clone();
        for owner in io.log.watchers(io.now)? {
            crate::metrics::incr(crate::metrics::Counter::PresenceHops);
            self.notify(Notice::Presence(PresenceNotice { owner, user: user.clone(), presence }));
        }
        Ok(())
    }

    /// A watched user's presence changed: shown on this user's v1 sockets.
    pub fn presence_notice<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, n: &PresenceNotice) -> Result<(), Error> {
        self.load(io, &n.owner)?;
        let frame = wire::presence(None, n.user.as_str(), n.presence);
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
        Ok(())
    }

    /// The user's settings.
    pub fn settings(&self) -> Settings {
        match self.life.as_ref() {
            Some(l) => Settings {
                hide_presence: l.hide_presence,
                group_adds: l.group_adds.unwrap_or(self.config.limits.group_adds_default),
            },
            None => Settings { group_adds: self.config.limits.group_adds_default, ..Settings::default() },
        }
    }

    /// A change of the user's settings: each field it names (one row each
    /// that changes), then the new settings on every v1 socket.
    pub fn apply_settings<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, change: SettingsChange) -> Result<(), Error> {
        let mut changed = false;
        // Compared with the choice stored, not the default: a choice made
        // stays when the operator's default changes.
        let current = self.life()?.group_adds;
        if let Some(adds) = change.group_adds.filter(|a| Some(*a) != current) {
            io.log.set_group_adds(adds)?;
            self.life_mut()?.group_adds = Some(adds);
            changed = true;
        }
        match change.hide_presence {
            Some(hide) if hide != self.life()?.hide_presence => self.change_settings(io, hide),
            _ if changed => {
                self.show_settings(io);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn show_settings<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) {
        let frame = wire::settings(self.settings());
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
    }

    /// A change of `hide_presence`: stored (one row), shown on every v1
    /// socket, and told to the watchers (hiding looks like going offline,
    /// never seen). A repeat writes nothing.
    pub fn change_settings<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, hide: bool) -> Result<(), Error> {
        if self.life()?.hide_presence == hide {
            return Ok(());
        }
        io.log.set_hide_presence(hide)?;
        self.life_mut()?.hide_presence = hide;
        self.show_settings(io);
        // The groups keep the user's read position from the others while hidden.
        let groups = io.log.group_ids()?;
        if !groups.is_empty() {
            let owner = self.life()?.owner.clone();
            self.effects.push(super::Effect::HideReads { owner, groups, hidden: hide });
        }
        let now = if hide { Presence::HIDDEN } else { self.presence_now(io.sockets, io.now) };
        self.tell_watchers(io, now)
    }

    /// `GET|PUT /v1/settings`: the settings, after the change if any.
    pub fn settings_request<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        uid: &UserId,
        change: SettingsChange,
    ) -> Result<String, Error> {
        self.load(io, uid)?;
        self.apply_settings(io, change)?;
        Ok(self.settings().encode())
    }
}
