//! The core of a peer-to-peer file store over a UDP overlay.
//!
//! Files are cut into 8192-byte fragments addressed by their SHA-256; the
//! nodes whose `id % 16` equals `u64_be(hash[0..8]) % 16` hold a fragment.
//! An index fragment lists a file's fragments; its hash is the file's
//! address. Nodes form an overlay on UDP with three ways of sending a
//! packet: singlecast, randomcast and broadcast.
//!
//! This crate is the whole protocol and nothing else: it is `no_std`, uses
//! no allocator and no `unsafe`, does no networking and reads no clock. Time
//! and a random seed come from the caller, datagrams go out through a
//! caller-supplied [`node::Transmit`] sink, and fragments live behind the
//! [`store::FragmentStore`] trait. The same code runs in `dhtnode`, in the
//! client tools, in the simulator and on a microcontroller.
//!
//! Layers, bottom up:
//!
//! * [`config`]: protocol constants and node configuration;
//! * [`time`], [`rand`]: the caller's clock and a seeded generator;
//! * [`id`], [`fragment`], [`index`]: node ids, shards, addresses,
//!   fragments, the index that names a file;
//! * [`wire`]: the datagram format (postcard after a version byte);
//! * [`dedup`], [`neighbors`], [`store`], [`counters`], [`flow`],
//!   [`timer`], [`requests`], [`holders`]: the node's fixed-capacity parts
//!   (timer tables, the request table, the rendezvous ranking);
//! * [`node`]: the overlay node state machine and its sub-machines;
//! * [`upload`], [`download`]: client state machines driven by a node;
//! * [`driver`]: the one loop every runtime runs.
//!
//! No input from the network can make this crate panic: decoding is total,
//! indexing is checked, arithmetic on received values saturates. The
//! hostile-input tests feed a node hundreds of thousands of corrupted
//! datagrams to hold it to that.

#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod auth;
pub mod budget;
pub(crate) mod client;
pub mod config;
pub mod counters;
pub mod dedup;
pub mod download;
pub mod driver;
pub mod flow;
pub mod fragment;
pub mod holders;
pub mod id;
pub mod index;
pub mod neighbors;
pub mod node;
mod order;
pub mod rand;
pub mod requests;
pub mod store;
pub mod time;
pub mod timer;
pub mod upload;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod testing;

pub use config::{
    Config, ConfigError, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE, MAX_FILE_SIZE, SHARD_COUNT,
};
pub use fragment::FragmentHash;
pub use id::{NodeId, PeerAddr, PeerInfo, Shard};
pub use index::{IndexFragment, IndexName};
pub use node::{Event, Node, Reply, SmallNode, Transmit};
pub use time::{Duration, Instant};
