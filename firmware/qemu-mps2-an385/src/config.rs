//! The firmware's settings, from the semihosting command line:
//! `key=value` words separated by spaces (the first word, the program name,
//! is skipped).
//!
//! | key | example | meaning |
//! |-----|---------|---------|
//! | `port` | `9000` | UDP port inside the guest |
//! | `ip` | `10.0.2.15/24` | the interface's address and prefix |
//! | `gateway` | `10.0.2.2` | default route (optional) |
//! | `advertise` | `127.0.0.1:19000` | where peers reach the node (QEMU's host forward) |
//! | `seed` | `127.0.0.1:7000` | the node to join through |
//! | `translate` | `127.0.0.1>10.0.2.2` | peers advertised at the first address are reached at the second |
//! | `id` | `0x15` | node id (its shard is `id % 16`) |
//! | `mac` | `52:54:00:12:34:56` | Ethernet address |
//! | `upload-after` | `3` | seconds after joining to upload the file in flash (0: never) |
//! | `status-every` | `2` | seconds between status lines |
//! | `run` | `0` | seconds before the firmware exits (0: run until stopped) |
//! | `key` | `swordfish` | the network's key (the text of the hosts' key file): every datagram is tagged and checked (none: an open network) |
//! | `bench-hmac` | `16` | at boot, time this many network-key tags over datagrams of 8192, 1452 and 96 bytes and log the cost (0: no) |
//!
//! The key is the text of the hosts' key file without its trailing white
//! space (as the tools read it), so it cannot hold a space (QEMU's
//! `-semihosting-config` also needs a comma doubled). A key given here is as
//! secret as the command line: fine for the emulator, while a real board
//! would keep it in its own flash.

use dht_core::auth::NetworkKey;
use dht_core::{Duration, NodeId, PeerAddr};
use dht_smoltcp::Translation;

/// Settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub ip: [u8; 4],
    pub prefix_len: u8,
    pub gateway: Option<[u8; 4]>,
    pub advertise: PeerAddr,
    pub seed: Option<PeerAddr>,
    pub translation: Option<Translation>,
    pub id: NodeId,
    pub mac: [u8; 6],
    pub upload_after: Option<Duration>,
    pub status_every: Duration,
    pub run_for: Option<Duration>,
    pub key: Option<NetworkKey>,
    pub bench_hmac: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 9000,
            ip: [10, 0, 2, 15],
            prefix_len: 24,
            gateway: Some([10, 0, 2, 2]),
            advertise: PeerAddr::v4([10, 0, 2, 15], 9000),
            seed: None,
            translation: None,
            id: NodeId(0x15),
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            upload_after: None,
            status_every: Duration::from_secs(2),
            run_for: None,
            key: None,
            bench_hmac: 0,
        }
    }
}

/// A word of the command line that could not be used.
#[derive(Clone, Copy, Debug)]
pub struct BadSetting<'a>(pub &'a str);

impl Settings {
    /// Parses the command line.
    pub fn parse(cmdline: &str) -> Result<Settings, BadSetting<'_>> {
        let mut s = Settings::default();
        let mut advertised = false;
        for word in cmdline.split_ascii_whitespace().skip(1) {
            let bad = BadSetting(word);
            let (key, value) = word.split_once('=').ok_or(bad)?;
            match key {
                "port" => s.port = value.parse().map_err(|_| bad)?,
                "ip" => {
                    let (ip, prefix) = value.split_once('/').unwrap_or((value, "24"));
                    s.ip = ipv4(ip).ok_or(bad)?;
                    s.prefix_len = prefix.parse().ok().filter(|p| *p <= 32).ok_or(bad)?;
                }
                "gateway" => s.gateway = Some(ipv4(value).ok_or(bad)?),
                "advertise" => {
                    s.advertise = endpoint(value).ok_or(bad)?;
                    advertised = true;
                }
                "seed" => s.seed = Some(endpoint(value).ok_or(bad)?),
                "translate" => {
                    let (outside, inside) = value.split_once('>').ok_or(bad)?;
                    s.translation = Some(Translation {
                        outside: ipv4(outside).ok_or(bad)?,
                        inside: ipv4(inside).ok_or(bad)?,
                    });
                }
                "id" => s.id = NodeId(number(value).ok_or(bad)?),
                "mac" => s.mac = mac(value).ok_or(bad)?,
                "upload-after" => {
                    let secs = number(value).ok_or(bad)?;
                    s.upload_after = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "status-every" => {
                    s.status_every = Duration::from_secs(number(value).ok_or(bad)?.max(1))
                }
                "run" => {
                    let secs = number(value).ok_or(bad)?;
                    s.run_for = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "key" if !value.is_empty() => s.key = Some(NetworkKey::new(value.as_bytes())),
                "bench-hmac" => {
                    s.bench_hmac = u32::try_from(number(value).ok_or(bad)?).map_err(|_| bad)?
                }
                _ => return Err(bad),
            }
        }
        if !advertised {
            s.advertise = PeerAddr::v4(s.ip, s.port);
        }
        Ok(s)
    }
}

fn ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in out.iter_mut() {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn endpoint(text: &str) -> Option<PeerAddr> {
    let (ip, port) = text.rsplit_once(':')?;
    Some(PeerAddr::v4(ipv4(ip)?, port.parse().ok()?))
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in out.iter_mut() {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
