//! UDP transport: the core's datagrams on a `std::net::UdpSocket`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use dht_core::node::{SendError, Transmit};
use dht_core::PeerAddr;

/// Socket buffer size asked for. The kernel caps it at `net.core.rmem_max`
/// / `wmem_max`; the default of about 208 KiB holds only a dozen 8 KiB
/// datagrams, fewer than a download keeps in flight.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A bound UDP socket that the core sends through.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    /// The read timeout last set, so that an unchanged one costs no
    /// system call.
    read_timeout: Option<std::time::Duration>,
}

impl UdpTransport {
    /// Binds `addr`. A port already in use gives an error that says so.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpTransport> {
        let socket = bind_with_buffers(addr).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => io::Error::new(
                e.kind(),
                format!("UDP port {} is already in use on {}", addr.port(), addr.ip()),
            ),
            io::ErrorKind::AddrNotAvailable => {
                io::Error::new(e.kind(), format!("{} is not an address of this machine", addr.ip()))
            }
            io::ErrorKind::PermissionDenied => io::Error::new(
                e.kind(),
                format!("not allowed to bind {addr} (ports below 1024 need privileges)"),
            ),
            _ => io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")),
        })?;
        Ok(UdpTransport { socket, read_timeout: None })
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sets how long a receive waits (`None`: for ever).
    pub fn set_read_timeout(&mut self, wait: Option<std::time::Duration>) -> io::Result<()> {
        if wait != self.read_timeout {
            self.socket.set_read_timeout(wait)?;
            self.read_timeout = wait;
        }
        Ok(())
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Transmit for UdpTransport {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        match self.socket.send_to(datagram, SocketAddr::from(to)) {
            Ok(_) => Ok(()),
            Err(e) => {
                log::debug!("send to {to} failed: {e}");
                Err(SendError)
            }
        }
    }
}

/// Binds a UDP socket with large send and receive buffers.
fn bind_with_buffers(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only costs retransmissions.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Resolves `host` (a name or an address) and `port` to a socket address,
/// preferring IPv4. The error names the host so a person can fix it.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve host '{host}': {e}"))
        })?
        .collect();
    addrs.iter().find(|a| a.is_ipv4()).or_else(|| addrs.first()).copied().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("host '{host}' has no address"))
    })
}

/// The address a client should bind to reach `peer`: loopback for a
/// loopback peer, the unspecified address of the same family otherwise.
pub fn client_bind_addr(peer: SocketAddr, port: u16) -> SocketAddr {
    let ip = match peer.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, port)
}

/// Asks the kernel to report errors from the network (an ICMP "port
/// unreachable") on `socket` although it is not connected: a receive then
/// fails with `ConnectionRefused` right after a datagram went to a port
/// nobody listens on (Linux only; elsewhere nothing changes). Other ICMP
/// errors come the same way (`HostUnreachable` when a neighbour did not
/// answer ARP): the runtime passes over those.
pub fn report_refusals(socket: &UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let local = socket.local_addr()?;
        let set = if local.is_ipv4() {
            setsockopt(socket, sockopt::Ipv4RecvErr, &true)
        } else {
            setsockopt(socket, sockopt::Ipv6RecvErr, &true)
        };
        set.map_err(io::Error::from)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    Ok(())
}
