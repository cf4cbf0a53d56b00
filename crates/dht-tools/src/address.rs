//! Hosts on the command line, written one way in every tool: a name, an
//! IPv4 address or an IPv6 address, bare or in brackets, with a port
//! where one fits.
//!
//! | written          | host        | port |
//! |------------------|-------------|------|
//! | `::1`, `[::1]`   | `::1`       | none |
//! | `[::1]:8000`     | `::1`       | 8000 |
//! | `127.0.0.1`      | `127.0.0.1` | none |
//! | `127.0.0.1:8000` | `127.0.0.1` | 8000 |
//! | `localhost`      | `localhost` | none |
//! | `localhost:8000` | `localhost` | 8000 |
//!
//! An IPv6 address with a port needs the brackets: `::1:8000` is the
//! address `::1:8000`. Where a tool also takes the port as an argument of
//! its own (`dhtrecv HASH HOST PORT`), the two must agree
//! ([`HostArg::port_with`]).
//!
//! A name resolves to every address it has ([`HostArg::resolve`]), IPv4
//! ones first, and the tools try them in turn ([`in_turn`]). `localhost`
//! is `127.0.0.1` and `::1`, whatever the resolver says.
//!
//! ```
//! use dht_tools::address::HostArg;
//! let host: HostArg = "[::1]:8000".parse().unwrap();
//! assert_eq!(host.port, Some(8000));
//! assert_eq!(host.port_with(None).unwrap(), 8000);
//! assert!(host.port_with(Some(8001)).is_err());
//! let addrs = host.resolve(8000).unwrap();
//! assert_eq!(addrs, ["[::1]:8000".parse().unwrap()]);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// A host as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A name to resolve.
    Name(String),
}

/// A host argument: the host and the port it carried, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostArg {
    /// The host.
    pub host: Host,
    /// The port written with it (`host:port`, `[v6]:port`).
    pub port: Option<u16>,
    /// The argument as written, for messages.
    pub text: String,
}

/// Parses a port written after a host.
fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("'{text}' ends with ':' but no port"));
    }
    port.parse().map_err(|_| format!("'{port}' in '{text}' is not a port number (0 to 65535)"))
}

impl FromStr for HostArg {
    type Err = String;

    fn from_str(text: &str) -> Result<HostArg, String> {
        let arg = |host, port| Ok(HostArg { host, port, text: text.to_owned() });
        if text.is_empty() {
            return Err("the host is empty".into());
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| {
                format!("'{text}' has '[' without ']'; write [IPV6] or [IPV6]:PORT")
            })?;
            let ip: Ipv6Addr = inside.parse().map_err(|_| {
                format!("'{inside}' in '{text}' is not an IPv6 address; brackets hold only one")
            })?;
            return match after {
                "" => arg(Host::Ip(IpAddr::V6(ip)), None),
                _ => match after.strip_prefix(':') {
                    Some(port) => arg(Host::Ip(IpAddr::V6(ip)), Some(parse_port(text, port)?)),
                    None => Err(format!(
                        "'{text}' has '{after}' after ']'; write [IPV6] or [IPV6]:PORT"
                    )),
                },
            };
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return arg(Host::Ip(ip), None);
        }
        if text.contains(['[', ']']) {
            return Err(format!("'{text}' has ']' without '['; write [IPV6] or [IPV6]:PORT"));
        }
        let (host, port) = match text.split_once(':') {
            None => (text, None),
            Some((host, port)) if !port.contains(':') => (host, Some(parse_port(text, port)?)),
            Some(_) => {
                return Err(format!(
                    "'{text}' is not an IPv6 address, and an IPv6 address with a port is \
                     written in brackets: [IPV6]:PORT"
                ))
            }
        };
        if host.is_empty() {
            return Err(format!("'{text}' has a port but no host"));
        }
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => arg(Host::Ip(IpAddr::V4(ip)), port),
            Err(_) => arg(Host::Name(host.to_owned()), port),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl HostArg {
    /// Parses a host argument (see the [module doc](self)).
    pub fn parse(text: &str) -> Result<HostArg, String> {
        text.parse()
    }

    /// The port to use: the one written with the host, or `given` (the
    /// tool's own port argument), which must agree when both are there.
    pub fn port_with(&self, given: Option<u16>) -> Result<u16, String> {
        match (self.port, given) {
            (Some(written), Some(given)) if written != given => Err(format!(
                "'{}' says port {written} but the port argument is {given}; give the port once",
                self.text
            )),
            (Some(port), _) | (None, Some(port)) => Ok(port),
            (None, None) => {
                Err(format!("no port for '{}': give HOST PORT or HOST:PORT", self.text))
            }
        }
    }

    /// Every address of the host with `port`: IPv4 addresses first, then
    /// IPv6, each once. A name that does not resolve is an error naming it.
    pub fn resolve(&self, port: u16) -> Result<Vec<SocketAddr>, String> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
            Host::Name(name) => name,
        };
        // RFC 6761 (6.3): localhost names are the loopback addresses, never
        // looked up. Both families, whatever /etc/hosts lists, so that a
        // node on ::1 is found as "localhost" on every machine.
        let lower = name.to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Ok(vec![
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
            ]);
        }
        let found = (name.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve host '{name}': {e}"))?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in found {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        // Stable: the resolver's order within each family.
        addrs.sort_by_key(|a| a.is_ipv6());
        if addrs.is_empty() {
            return Err(format!("host '{name}' has no address"));
        }
        Ok(addrs)
    }
}

/// The addresses of a node given as a host argument and the tool's port
/// argument (which may be absent when the host carries the port). Port 0
/// is refused: no node listens there.
pub fn node_addrs(host: &str, port: Option<u16>) -> Result<Vec<SocketAddr>, String> {
    let host = HostArg::parse(host)?;
    let port = host.port_with(port)?;
    if port == 0 {
        return Err(format!("port 0 of '{}' is not a node's port", host.text));
    }
    host.resolve(port)
}

/// Addresses as a list for messages: `a`, `a or b`, `a, b or c`.
pub fn list(addrs: &[SocketAddr]) -> String {
    let words: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// What an attempt at one address says about the next.
#[derive(Debug)]
pub enum Attempt<E> {
    /// This address did not work; the next may.
    Next(E),
    /// Stop here (the user interrupted, or nothing else can work).
    Stop(E),
}

/// Runs `attempt` on each address in turn until one succeeds or asks to
/// stop. The errors of every address tried are returned in order.
pub fn in_turn<T, E>(
    addrs: &[SocketAddr],
    mut attempt: impl FnMut(SocketAddr) -> Result<T, Attempt<E>>,
) -> Result<T, Vec<(SocketAddr, E)>> {
    let mut errors = Vec::new();
    for addr in addrs {
        match attempt(*addr) {
            Ok(done) => return Ok(done),
            Err(Attempt::Next(e)) => errors.push((*addr, e)),
            Err(Attempt::Stop(e)) => {
                errors.push((*addr, e));
                break;
            }
        }
    }
    Err(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Host, Option<u16>) {
        let arg = HostArg::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(arg.text, text);
        (arg.host, arg.port)
    }

    fn ip(text: &str) -> Host {
        Host::Ip(text.parse().unwrap())
    }

    fn name(text: &str) -> Host {
        Host::Name(text.into())
    }

    #[test]
    fn every_spelling_of_a_host_is_understood() {
        assert_eq!(parsed("::1"), (ip("::1"), None));
        assert_eq!(parsed("[::1]"), (ip("::1"), None));
        assert_eq!(parsed("[::1]:8000"), (ip("::1"), Some(8000)));
        assert_eq!(parsed("127.0.0.1"), (ip("127.0.0.1"), None));
        assert_eq!(parsed("127.0.0.1:8000"), (ip("127.0.0.1"), Some(8000)));
        assert_eq!(parsed("localhost"), (name("localhost"), None));
        assert_eq!(parsed("localhost:8000"), (name("localhost"), Some(8000)));
        assert_eq!(parsed("fe80::1:2"), (ip("fe80::1:2"), None));
        assert_eq!(parsed("[2001:db8::7]:65535"), (ip("2001:db8::7"), Some(65535)));
        assert_eq!(parsed("::ffff:127.0.0.1"), (ip("::ffff:127.0.0.1"), None));
        assert_eq!(parsed("node-7.example"), (name("node-7.example"), None));
        assert_eq!(parsed("0.0.0.0:0"), (ip("0.0.0.0"), Some(0)));
        // Without brackets, what follows the last colon is part of the
        // IPv6 address, as the standard says.
        assert_eq!(parsed("::1:8000"), (ip("::1:8000"), None));
    }

    #[test]
    fn bad_hosts_are_refused_with_what_to_write() {
        for (text, expected) in [
            ("", "the host is empty"),
            ("[::1", "'[' without ']'"),
            ("::1]", "']' without '['"),
            ("[localhost]", "is not an IPv6 address"),
            ("[127.0.0.1]:80", "is not an IPv6 address"),
            ("[::1]8000", "after ']'"),
            ("[::1]:", "no port"),
            ("[::1]:http", "'http' in '[::1]:http' is not a port number"),
            ("localhost:", "no port"),
            ("localhost:99999", "'99999' in 'localhost:99999' is not a port number"),
            ("127.0.0.1:-1", "is not a port number"),
            (":8000", "a port but no host"),
            ("a:b:c", "written in brackets: [IPV6]:PORT"),
            ("1::2::3", "written in brackets"),
        ] {
            let err = HostArg::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text:?}: {err:?} should say {expected:?}");
        }
    }

    #[test]
    fn a_port_is_given_once_or_the_same_twice() {
        let with = HostArg::parse("[::1]:8000").unwrap();
        let without = HostArg::parse("::1").unwrap();
        assert_eq!(with.port_with(None), Ok(8000));
        assert_eq!(with.port_with(Some(8000)), Ok(8000));
        let err = with.port_with(Some(8001)).unwrap_err();
        assert!(err.contains("port 8000 but the port argument is 8001"), "{err}");
        assert_eq!(without.port_with(Some(9)), Ok(9));
        let err = without.port_with(None).unwrap_err();
        assert!(err.contains("give HOST PORT or HOST:PORT"), "{err}");
    }

    #[test]
    fn addresses_resolve_to_themselves_and_names_through_the_resolver() {
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(node_addrs("::1", Some(7)).unwrap(), [v6]);
        assert_eq!(node_addrs("[::1]", Some(7)).unwrap(), [v6]);
        assert_eq!(node_addrs("[::1]:7", None).unwrap(), [v6]);
        assert_eq!(node_addrs("[::1]:7", Some(7)).unwrap(), [v6]);
        assert_eq!(node_addrs("127.0.0.1:7", None).unwrap(), [v4]);
        // localhost is both loopbacks, IPv4 first, whatever /etc/hosts says.
        assert_eq!(node_addrs("localhost", Some(7)).unwrap(), [v4, v6]);
        assert_eq!(node_addrs("localhost:7", None).unwrap(), [v4, v6]);
        assert_eq!(node_addrs("LocalHost", Some(7)).unwrap(), [v4, v6]);
        assert_eq!(node_addrs("node.localhost", Some(7)).unwrap(), [v4, v6]);
        let err = node_addrs("no such host.invalid", Some(7)).unwrap_err();
        assert!(err.contains("cannot resolve host 'no such host.invalid'"), "{err}");
        let err = node_addrs("[::1]:0", None).unwrap_err();
        assert!(err.contains("port 0"), "{err}");
    }

    #[test]
    fn each_address_is_tried_until_one_works() {
        let addrs: Vec<SocketAddr> =
            ["127.0.0.1:1", "[::1]:1", "127.0.0.2:1"].iter().map(|a| a.parse().unwrap()).collect();
        let mut tried = Vec::new();
        let got = in_turn(&addrs, |a| {
            tried.push(a);
            if a.is_ipv6() {
                Ok(a)
            } else {
                Err(Attempt::Next("no answer"))
            }
        });
        assert_eq!(got, Ok(addrs[1]));
        assert_eq!(tried, &addrs[..2]);

        let all: Result<(), _> = in_turn(&addrs, |_| Err(Attempt::Next("no answer")));
        assert_eq!(all.unwrap_err().len(), 3);

        let mut count = 0;
        let stopped: Result<(), _> = in_turn(&addrs, |_| {
            count += 1;
            Err(Attempt::Stop("interrupted"))
        });
        assert_eq!(stopped.unwrap_err(), [(addrs[0], "interrupted")]);
        assert_eq!(count, 1);
        assert_eq!(list(&addrs), "127.0.0.1:1, [::1]:1 or 127.0.0.2:1");
        assert_eq!(list(&addrs[..1]), "127.0.0.1:1");
    }
}
