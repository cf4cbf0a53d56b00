//! What a node has done, counted.
//!
//! Datagrams and bytes in and out per message kind, datagrams relayed, and
//! every drop by its reason. A node reports them in a STATS message, the
//! simulator sums them over all nodes to compare replication strategies, and
//! `dhtping --stats` prints them. All counters saturate.
//!
//! On the wire the counters are a length-prefixed list of `(id, value)`
//! pairs, only the non-zero ones ([`CounterId`] numbers them), so adding a
//! counter adds an id and changes no other counter's place; a receiver
//! ignores ids it does not know.

use core::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Declares the drop reasons: `"name" Variant,` in counter-id order.
macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $name:literal $variant:ident, )*) => {
        /// Why a datagram (or a request it carried) was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// All reasons in order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();

            /// A short name for reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Empty, truncated or otherwise undecodable.
    "malformed" Malformed,
    /// First byte is not our wire version.
    "bad_version" BadVersion,
    /// A FILEFRAG whose bytes do not hash to its hash.
    "bad_hash" BadHash,
    /// A broadcast whose UID was seen recently.
    "duplicate_broadcast" DuplicateBroadcast,
    /// A datagram from ourselves (a relay loop).
    "from_self" FromSelf,
    /// A reply nobody was waiting for (late, duplicated, or not ours).
    "unsolicited" Unsolicited,
    /// A store request refused because the store is full.
    "store_full" StoreFull,
    /// A store request for another shard.
    "wrong_shard" WrongShard,
    /// The store failed to write or read.
    "store_error" StoreError,
    /// A stored fragment failed its hash check when read and was removed.
    "corrupt_stored" CorruptStored,
    /// The transport refused an outgoing datagram.
    "send_failed" SendFailed,
    /// An announcement not followed up because the fetch table was full.
    "fetch_table_full" FetchTableFull,
    /// An application event lost because nobody polled events.
    "event_overflow" EventOverflow,
    /// A request that this role does not serve (a client asked to store),
    /// or a message from a sender that may not send it (a LEAVE not from
    /// the leaving node, HOLDINGS from a stranger).
    "not_served" NotServed,
    /// A datagram without a valid network key tag.
    "bad_tag" BadTag,
    /// A datagram that did not prove its sender's address where that was
    /// needed (answered with a RETRY when that fits).
    "unproven" Unproven,
    /// A message that may not travel by randomcast or broadcast.
    "not_relayable" NotRelayable,
    /// A sender over its relay, answer or store budget.
    "rate_limited" RateLimited,
    /// A broadcast dropped because the UID ring was full of recent UIDs.
    "dedup_full" DedupFull,
}

/// The number of a counter on the wire. Message kinds and drop reasons
/// each have a block of ids, so new kinds and reasons take new ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterId(pub u16);

impl CounterId {
    /// Datagrams received of a kind: `0x000 + kind`.
    pub const RECEIVED: u16 = 0x000;
    /// Bytes received of a kind: `0x040 + kind`.
    pub const RECEIVED_BYTES: u16 = 0x040;
    /// Datagrams sent of a kind: `0x080 + kind`.
    pub const SENT: u16 = 0x080;
    /// Bytes sent of a kind: `0x0C0 + kind`.
    pub const SENT_BYTES: u16 = 0x0C0;
    /// Drops by reason: `0x100 + reason`.
    pub const DROPS: u16 = 0x100;
    /// Datagrams relayed.
    pub const RELAYED: u16 = 0x180;
    /// Fragments stored.
    pub const FRAGMENTS_STORED: u16 = 0x181;
    /// Fragments served.
    pub const FRAGMENTS_SERVED: u16 = 0x182;
    /// Replication fetches completed.
    pub const FETCHES_COMPLETED: u16 = 0x183;
    /// Replication fetches given up.
    pub const FETCHES_ABANDONED: u16 = 0x184;
    /// Extra copies removed (held outside the top R, which all hold it).
    pub const EXTRA_COPIES_DROPPED: u16 = 0x185;
    /// Times the store became full.
    pub const STORE_FULL: u16 = 0x186;
}

const _: () = assert!(MessageKind::COUNT <= 0x40 && DropReason::COUNT <= 0x80);

/// A node's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Extra copies removed (held outside the top R, which all hold it).
    pub extra_copies_dropped: u64,
    /// Times the store became full (and stopped taking fragments).
    pub store_full: u64,
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
        self.extra_copies_dropped =
            self.extra_copies_dropped.saturating_add(other.extra_copies_dropped);
        self.store_full = self.store_full.saturating_add(other.store_full);
    }
}

impl Counters {
    /// The counter numbered `id`, if it is one this build knows.
    fn slot_mut(&mut self, id: u16) -> Option<&mut u64> {
        let index = |base: u16| usize::from(id.wrapping_sub(base));
        match id {
            0x000..=0x03F => {
                self.received.get_mut(index(CounterId::RECEIVED)).map(|t| &mut t.datagrams)
            }
            0x040..=0x07F => {
                self.received.get_mut(index(CounterId::RECEIVED_BYTES)).map(|t| &mut t.bytes)
            }
            0x080..=0x0BF => self.sent.get_mut(index(CounterId::SENT)).map(|t| &mut t.datagrams),
            0x0C0..=0x0FF => self.sent.get_mut(index(CounterId::SENT_BYTES)).map(|t| &mut t.bytes),
            0x100..=0x17F => self.drops.get_mut(index(CounterId::DROPS)),
            CounterId::RELAYED => Some(&mut self.relayed),
            CounterId::FRAGMENTS_STORED => Some(&mut self.fragments_stored),
            CounterId::FRAGMENTS_SERVED => Some(&mut self.fragments_served),
            CounterId::FETCHES_COMPLETED => Some(&mut self.fetches_completed),
            CounterId::FETCHES_ABANDONED => Some(&mut self.fetches_abandoned),
            CounterId::EXTRA_COPIES_DROPPED => Some(&mut self.extra_copies_dropped),
            CounterId::STORE_FULL => Some(&mut self.store_full),
            _ => None,
        }
    }

    /// Every non-zero counter with its id, in id order.
    pub fn entries(&self) -> impl Iterator<Item = (CounterId, u64)> + '_ {
        fn per_kind(
            base: u16,
            pick: fn(&Traffic) -> u64,
            list: &[Traffic],
        ) -> impl Iterator<Item = (u16, u64)> + '_ {
            list.iter().enumerate().map(move |(i, t)| (base + i as u16, pick(t)))
        }
        let datagrams: fn(&Traffic) -> u64 = |t| t.datagrams;
        let bytes: fn(&Traffic) -> u64 = |t| t.bytes;
        per_kind(CounterId::RECEIVED, datagrams, &self.received)
            .chain(per_kind(CounterId::RECEIVED_BYTES, bytes, &self.received))
            .chain(per_kind(CounterId::SENT, datagrams, &self.sent))
            .chain(per_kind(CounterId::SENT_BYTES, bytes, &self.sent))
            .chain(self.drops.iter().enumerate().map(|(i, d)| (CounterId::DROPS + i as u16, *d)))
            .chain([
                (CounterId::RELAYED, self.relayed),
                (CounterId::FRAGMENTS_STORED, self.fragments_stored),
                (CounterId::FRAGMENTS_SERVED, self.fragments_served),
                (CounterId::FETCHES_COMPLETED, self.fetches_completed),
                (CounterId::FETCHES_ABANDONED, self.fetches_abandoned),
                (CounterId::EXTRA_COPIES_DROPPED, self.extra_copies_dropped),
                (CounterId::STORE_FULL, self.store_full),
            ])
            .filter(|(_, value)| *value != 0)
            .map(|(id, value)| (CounterId(id), value))
    }

    /// Sets the counter `id` (ignored if this build does not know it).
    pub fn set(&mut self, id: CounterId, value: u64) {
        if let Some(slot) = self.slot_mut(id.0) {
            *slot = value;
        }
    }
}

impl Serialize for Counters {
    /// A length-prefixed list of `(id, value)` pairs, non-zero ones only.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.entries().count()))?;
        for (id, value) in self.entries() {
            seq.serialize_element(&(id.0, value))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Counters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Counters;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of (counter id, value) pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counters, A::Error> {
                // Each pair takes at least two bytes of the datagram, so a
                // huge announced length ends with the input.
                let mut counters = Counters::default();
                while let Some((id, value)) = seq.next_element::<(u16, u64)>()? {
                    counters.set(CounterId(id), value);
                }
                Ok(counters)
            }
        }
        deserializer.deserialize_seq(List)
    }
}

impl fmt::Display for Counters {
    /// One line per non-zero counter, `name value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &kind in MessageKind::ALL {
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
        writeln!(f, "extra_copies_dropped {}", self.extra_copies_dropped)?;
        writeln!(f, "store_full {}", self.store_full)?;
        for &reason in DropReason::ALL {
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
    fn counters_travel_as_id_value_pairs_and_unknown_ids_are_skipped() {
        let mut a = Counters::default();
        a.count_sent(MessageKind::Ping, 14);
        a.count_drop(DropReason::StoreFull);
        a.fragments_served = 300;
        let mut buf = [0u8; 64];
        let bytes = postcard::to_slice(&a, &mut buf).unwrap();
        // Four pairs: sent PING datagrams and bytes, a drop, fragments served.
        let ping = MessageKind::Ping.index() as u8;
        let expected = [
            0x04,
            0x80 + ping,
            0x01,
            0x01, // id 0x080 + 3 as a varint, value 1
            0xC0 + ping,
            0x01,
            0x0E, // id 0x0C0 + 3, value 14
            0x86,
            0x02,
            0x01, // id 0x106 (store_full), value 1
            0x82,
            0x03,
            0xAC,
            0x02, // id 0x182, value 300
        ];
        assert_eq!(bytes, &expected);
        assert_eq!(postcard::from_bytes::<Counters>(bytes).unwrap(), a);
        // An id from a newer node (0x1FF) is skipped, the rest is kept.
        let newer = [0x02, 0xFF, 0x03, 0x07, 0x82, 0x03, 0x05];
        let read = postcard::from_bytes::<Counters>(&newer).unwrap();
        assert_eq!(read.fragments_served, 5);
        // A length larger than the input ends with the input, not a panic.
        assert!(postcard::from_bytes::<Counters>(&[0xFF, 0xFF, 0x03, 0x01, 0x01]).is_err());
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
