//! What a node has done, counted.
//!
//! Datagrams and bytes in and out per message kind, datagrams relayed, and
//! every drop by its reason. A node reports them in a STATS message, the
//! simulator sums them over all nodes to compare replication strategies, and
//! `dhtping --stats` prints them. All counters saturate.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::wire::MessageKind;

/// Datagrams and bytes of one direction and kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes of UDP payload.
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, bytes: usize) {
        self.datagrams = self.datagrams.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// The sum of two counts.
    pub fn plus(self, other: Traffic) -> Traffic {
        Traffic {
            datagrams: self.datagrams.saturating_add(other.datagrams),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// Why a datagram (or a request it carried) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Empty, truncated or otherwise undecodable.
    Malformed,
    /// First byte is not our wire version.
    BadVersion,
    /// A FILEFRAG whose bytes do not hash to its hash.
    BadHash,
    /// A broadcast whose UID was seen recently.
    DuplicateBroadcast,
    /// A datagram from ourselves (a relay loop).
    FromSelf,
    /// A reply nobody was waiting for (late, duplicated, or not ours).
    Unsolicited,
    /// A store request refused because the store is full.
    StoreFull,
    /// A store request for another shard.
    WrongShard,
    /// The store failed to write or read.
    StoreError,
    /// A stored fragment failed its hash check when read and was removed.
    CorruptStored,
    /// The transport refused an outgoing datagram.
    SendFailed,
    /// An announcement not followed up because the fetch table was full.
    FetchTableFull,
    /// An application event lost because nobody polled events.
    EventOverflow,
    /// A request that this role does not serve (a client asked to store).
    NotServed,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 14;

    /// All reasons in order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::BadVersion,
        DropReason::BadHash,
        DropReason::DuplicateBroadcast,
        DropReason::FromSelf,
        DropReason::Unsolicited,
        DropReason::StoreFull,
        DropReason::WrongShard,
        DropReason::StoreError,
        DropReason::CorruptStored,
        DropReason::SendFailed,
        DropReason::FetchTableFull,
        DropReason::EventOverflow,
        DropReason::NotServed,
    ];

    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHash => "bad_hash",
            DropReason::DuplicateBroadcast => "duplicate_broadcast",
            DropReason::FromSelf => "from_self",
            DropReason::Unsolicited => "unsolicited",
            DropReason::StoreFull => "store_full",
            DropReason::WrongShard => "wrong_shard",
            DropReason::StoreError => "store_error",
            DropReason::CorruptStored => "corrupt_stored",
            DropReason::SendFailed => "send_failed",
            DropReason::FetchTableFull => "fetch_table_full",
            DropReason::EventOverflow => "event_overflow",
            DropReason::NotServed => "not_served",
        }
    }
}

/// A node's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Received, per message kind (in [`MessageKind::ALL`] order).
    pub received: [Traffic; MessageKind::COUNT],
    /// Sent by this node, per message kind, relays included.
    pub sent: [Traffic; MessageKind::COUNT],
    /// Randomcast and broadcast datagrams relayed (also counted in `sent`).
    pub relayed: u64,
    /// Drops by reason (in [`DropReason::ALL`] order).
    pub drops: [u64; DropReason::COUNT],
    /// Fragments stored.
    pub fragments_stored: u64,
    /// Fragments served in answer to FILEGET.
    pub fragments_served: u64,
    /// Replication fetches completed.
    pub fetches_completed: u64,
    /// Replication fetches given up.
    pub fetches_abandoned: u64,
}

impl Counters {
    /// Counts a datagram received.
    pub fn count_received(&mut self, kind: MessageKind, bytes: usize) {
        if let Some(t) = self.received.get_mut(kind.index()) {
            t.add(bytes);
        }
    }

    /// Counts a datagram sent.
    pub fn count_sent(&mut self, kind: MessageKind, bytes: usize) {
        if let Some(t) = self.sent.get_mut(kind.index()) {
            t.add(bytes);
        }
    }

    /// Counts a drop.
    pub fn count_drop(&mut self, reason: DropReason) {
        if let Some(d) = self.drops.get_mut(reason as usize) {
            *d = d.saturating_add(1);
        }
    }

    /// Drops counted for `reason`.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    /// Traffic received of `kind`.
    pub fn received_of(&self, kind: MessageKind) -> Traffic {
        self.received.get(kind.index()).copied().unwrap_or_default()
    }

    /// Traffic sent of `kind`.
    pub fn sent_of(&self, kind: MessageKind) -> Traffic {
        self.sent.get(kind.index()).copied().unwrap_or_default()
    }

    /// Everything sent.
    pub fn sent_total(&self) -> Traffic {
        self.sent.iter().fold(Traffic::default(), |acc, t| acc.plus(*t))
    }

    /// Everything received.
    pub fn received_total(&self) -> Traffic {
        self.received.iter().fold(Traffic::default(), |acc, t| acc.plus(*t))
    }

    /// Adds another node's counters to these (for network totals).
    pub fn accumulate(&mut self, other: &Counters) {
        for (a, b) in self.received.iter_mut().zip(other.received.iter()) {
            *a = a.plus(*b);
        }
        for (a, b) in self.sent.iter_mut().zip(other.sent.iter()) {
            *a = a.plus(*b);
        }
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a = a.saturating_add(*b);
        }
        self.relayed = self.relayed.saturating_add(other.relayed);
        self.fragments_stored = self.fragments_stored.saturating_add(other.fragments_stored);
        self.fragments_served = self.fragments_served.saturating_add(other.fragments_served);
        self.fetches_completed = self.fetches_completed.saturating_add(other.fetches_completed);
        self.fetches_abandoned = self.fetches_abandoned.saturating_add(other.fetches_abandoned);
    }
}

impl fmt::Display for Counters {
    /// One line per non-zero counter, `name value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in MessageKind::ALL {
            let rx = self.received_of(kind);
            let tx = self.sent_of(kind);
            if rx.datagrams > 0 || tx.datagrams > 0 {
                writeln!(
                    f,
                    "{:<9} in {:>8} dgrams {:>11} bytes   out {:>8} dgrams {:>11} bytes",
                    kind.name(),
                    rx.datagrams,
                    rx.bytes,
                    tx.datagrams,
                    tx.bytes
                )?;
            }
        }
        writeln!(f, "relayed {}", self.relayed)?;
        writeln!(f, "fragments_stored {}", self.fragments_stored)?;
        writeln!(f, "fragments_served {}", self.fragments_served)?;
        writeln!(f, "fetches_completed {}", self.fetches_completed)?;
        writeln!(f, "fetches_abandoned {}", self.fetches_abandoned)?;
        for reason in DropReason::ALL {
            let n = self.drops_of(reason);
            if n > 0 {
                writeln!(f, "drop.{} {}", reason.name(), n)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let mut a = Counters::default();
        a.count_sent(MessageKind::FileFrag, 8262);
        a.count_sent(MessageKind::Ping, 14);
        a.count_received(MessageKind::Pong, 14);
        a.count_drop(DropReason::BadHash);
        let mut total = Counters::default();
        total.accumulate(&a);
        total.accumulate(&a);
        assert_eq!(total.sent_total(), Traffic { datagrams: 4, bytes: 2 * (8262 + 14) });
        assert_eq!(total.received_of(MessageKind::Pong).datagrams, 2);
        assert_eq!(total.drops_of(DropReason::BadHash), 2);
    }

    #[test]
    fn reason_order_matches_discriminants() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
