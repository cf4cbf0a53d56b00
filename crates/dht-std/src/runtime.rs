//! The single-threaded event loop.
//!
//! [`Runtime::run`] blocks in `recv_from` with a read timeout set to the
//! earliest of the core's [`poll_timeout`](dht_core::Node::poll_timeout),
//! the application's, and the caller's deadline; with none of them it
//! blocks indefinitely, so an idle node uses no CPU. Every datagram goes to
//! [`Node::handle_datagram`]; answers to the application's own requests go
//! on to its [`App::handle_reply`], and node events to
//! [`App::handle_event`].
//!
//! SIGINT and SIGTERM set a flag and, through signal-hook's self-pipe,
//! send one byte from a local socket to the node's own socket, which wakes
//! `recv_from`; the loop then returns [`Stop::Signal`] so the caller can
//! leave the network cleanly.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dht_core::driver::{self, App};
use dht_core::store::FragmentStore;
use dht_core::{Instant, Node};

use crate::transport::UdpTransport;

/// Converts between `std::time::Instant` and the core's clock, whose origin
/// is the moment the clock was made.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock { origin: std::time::Instant::now() }
    }

    /// The core's time now.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// How long until `at` (zero if it has passed).
    pub fn until(&self, at: Instant) -> std::time::Duration {
        std::time::Duration::from_micros(at.saturating_since(self.now()).total_micros())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Runtime::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The application is done.
    Done,
    /// The deadline passed.
    Deadline,
    /// SIGINT or SIGTERM arrived.
    Signal,
    /// The kernel said a datagram went to a port nobody listens on, before
    /// any datagram came (only in [`Runtime::run_until_refused`]:
    /// a tool joining through a node that is not there).
    Refused,
}

struct Signals {
    flag: Arc<AtomicBool>,
    wake_from: SocketAddr,
}

/// Builds a node with `make` on a short-lived thread and returns it on the
/// heap. A `Node` is about 120 KB; built on the main thread, it and the
/// copies made while moving it into place stay resident in the main
/// stack for the process's life (a `dhtnode` had 272 KB of stack for a
/// 120 KB node). The builder thread's stack goes back to the system when
/// it ends, so only the heap copy remains.
pub fn build_node<S, E>(make: impl FnOnce() -> Result<Node<S>, E> + Send) -> Result<Box<Node<S>>, E>
where
    S: FragmentStore + Send,
    E: Send,
{
    std::thread::scope(|scope| match scope.spawn(|| make().map(Box::new)).join() {
        Ok(built) => built,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A node, its socket and its clock.
pub struct Runtime<S: FragmentStore> {
    /// The node (on the heap: see [`build_node`]).
    pub node: Box<Node<S>>,
    /// Its socket.
    pub transport: UdpTransport,
    /// Its clock.
    pub clock: Clock,
    buf: Vec<u8>,
    signals: Option<Signals>,
    /// Stop with [`Stop::Refused`] on a refusal before anything was heard.
    stop_when_refused: bool,
    /// A datagram came.
    heard: bool,
}

impl<S: FragmentStore> Runtime<S> {
    /// Puts a node on a bound socket.
    pub fn new(node: Box<Node<S>>, transport: UdpTransport, clock: Clock) -> Self {
        // One byte more than the protocol's largest datagram: a longer one
        // comes cut to that length, and being longer than any honest
        // datagram it fails its key tag or decodes as what its first bytes
        // say (trailing bytes must be zero), as it would whole. A buffer
        // for any UDP datagram (64 KiB, zeroed) cost every node 56 KiB of
        // resident memory that never held a byte.
        Runtime {
            node,
            transport,
            clock,
            buf: vec![0; dht_core::MAX_DATAGRAM_SIZE + 1],
            signals: None,
            stop_when_refused: false,
            heard: false,
        }
    }

    /// Makes SIGINT and SIGTERM end [`Runtime::run`] with [`Stop::Signal`].
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let local = self.transport.local_addr()?;
        let target_ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let target = SocketAddr::new(target_ip, local.port());
        let bind_ip = match target_ip {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(ip),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(ip),
            ip => ip,
        };
        let waker = UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
        waker.connect(target)?;
        let wake_from = waker.local_addr()?;
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(signal, waker.try_clone()?)?;
        }
        self.signals = Some(Signals { flag, wake_from });
        Ok(())
    }

    /// Forgets a termination signal that was handled, so that the next one
    /// ends [`Runtime::run`] again (a second Ctrl-C during a graceful
    /// leave ends it at once).
    pub fn reset_signal(&self) {
        if let Some(s) = self.signals.as_ref() {
            s.flag.store(false, Ordering::SeqCst);
        }
    }

    /// Whether a termination signal arrived.
    pub fn signalled(&self) -> bool {
        self.signals.as_ref().is_some_and(|s| s.flag.load(Ordering::SeqCst))
    }

    /// [`Runtime::run`], stopping also with [`Stop::Refused`] when the
    /// kernel says the first datagrams went to a port nobody listens on,
    /// before anything was heard (a join or ping through an entry node).
    pub fn run_until_refused(
        &mut self,
        app: &mut impl App<S, 256, 1024, 64>,
        deadline: Option<Instant>,
    ) -> io::Result<Stop> {
        self.stop_when_refused = true;
        let stop = self.run(app, deadline);
        self.stop_when_refused = false;
        stop
    }

    /// Runs until the application is done, `deadline` passes, or a signal.
    /// The loop is [`dht_core::driver`]'s: timed work when the earliest
    /// wake-up has come, otherwise a datagram or the wake-up, whichever is
    /// first.
    pub fn run(
        &mut self,
        app: &mut impl App<S, 256, 1024, 64>,
        deadline: Option<Instant>,
    ) -> io::Result<Stop> {
        driver::drain_events(&mut self.node, app);
        loop {
            if self.signalled() {
                return Ok(Stop::Signal);
            }
            if app.is_done() {
                return Ok(Stop::Done);
            }
            let now = self.clock.now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Stop::Deadline);
            }
            let wake = driver::next_timeout(&self.node, app);
            if wake.is_some_and(|at| at <= now) {
                driver::on_timeout(&mut self.node, app, now, &mut self.transport);
                continue;
            }
            let next = [wake, deadline].into_iter().flatten().min();
            let wait = next.map(|at| self.clock.until(at).max(std::time::Duration::from_micros(1)));
            self.transport.set_read_timeout(wait)?;
            match self.transport.socket().recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    if self.signals.as_ref().is_some_and(|s| s.wake_from == from) {
                        continue;
                    }
                    self.heard = true;
                    let now = self.clock.now();
                    let bytes = self.buf.get(..len).unwrap_or(&[]);
                    driver::on_datagram(
                        &mut self.node,
                        app,
                        now,
                        from.into(),
                        bytes,
                        &mut self.transport,
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if self.stop_when_refused && !self.heard {
                        return Ok(Stop::Refused);
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset => {}
                    // An ICMP error for one datagram (the socket reports
                    // them, see `report_refusals`): a neighbour that did
                    // not answer ARP on a lossy link, a route that went.
                    // The request that sent it times out and goes on.
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                        log::debug!("a datagram did not reach its host: {e}");
                    }
                    _ => return Err(e),
                },
            }
        }
    }
}
