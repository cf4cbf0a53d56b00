//! Driver for the Microchip ENC28J60 10BASE-T Ethernet controller, as a
//! [`smoltcp::phy::Device`].
//!
//! The ENC28J60 is a MAC + PHY with 8 KiB of packet memory behind an SPI port. This crate
//! talks to it through [`embedded_hal::spi::SpiDevice`] (embedded-hal 1.0), is `#![no_std]`,
//! needs no allocator, uses no `unsafe` and never panics: every bus error is returned (or,
//! inside the smoltcp tokens, which cannot fail, counted and kept for
//! [`Enc28j60::take_last_error`]).
//!
//! # Memory cost
//!
//! smoltcp hands the driver closures that want a contiguous frame, so the driver owns one
//! receive buffer of [`MAX_FRAME_LEN`] (1518) bytes and one transmit buffer of [`MTU`]
//! (1514) bytes. `size_of::<Enc28j60<_>>()` is therefore about 3.1 KiB plus the size of
//! the SPI device (measured: 3104 bytes with an 8-byte SPI handle on x86-64). Keep the driver in a
//! `static` cell or at the bottom of `main`'s stack frame.
//!
//! Inside the chip the 8 KiB are split into a receive ring at `0x0000..=0x19FF`
//! (6656 bytes, four full-size frames) and a transmit buffer at `0x1A00..=0x1FFF` (one
//! full-size frame, its control byte and its status vector). A UDP datagram of 8300 bytes
//! arrives as six back-to-back 1514-byte IPv4 fragments, more than the ring holds at once,
//! so poll the interface promptly (or sleep on the INT pin, see
//! [`Enc28j60::enable_interrupts`]).
//!
//! # Wiring
//!
//! * SPI mode 0 (CPOL = 0, CPHA = 0), MSB first, at most 20 MHz. Use at least 8 MHz: the
//!   silicon errata (DS80349) report corrupted packets with slower SPI clocks.
//! * Chip select is handled by the `SpiDevice` implementation. The device must honour
//!   [`embedded_hal::spi::Operation::DelayNs`] (the start-up waits use it), or construct the
//!   driver with [`Enc28j60::with_config`] and pass a [`DelayNs`] provider instead.
//! * `INT` (active low) is optional: after [`Enc28j60::enable_interrupts`] it goes low while
//!   received packets wait in the chip, so a board can sleep until it fires. Poll the
//!   interface now and then anyway (the errata say `EIR.PKTIF` is not fully reliable).
//! * `RESET` may be tied high; the driver uses the SPI soft reset (DS39662E section 11.2).
//! * 3.3 V supply; the module's 25 MHz crystal and magnetics are assumed.
//!
//! # Duplex
//!
//! The ENC28J60 cannot auto-negotiate. A link partner that auto-negotiates detects the
//! speed by parallel detection and must then assume half duplex, so [`Config::default`]
//! configures half duplex (MAC `MACON3.FULDPX` and PHY `PHCON1.PDPXMD` always agree). Use
//! [`Duplex::Full`] only when the other end is forced to 10 Mbit/s full duplex.
//!
//! # Example
//!
//! ```no_run
//! use embedded_hal::spi::SpiDevice;
//! use enc28j60_phy::{Enc28j60, Error};
//!
//! fn bring_up<SPI: SpiDevice>(spi: SPI) -> Result<Enc28j60<SPI>, Error<SPI::Error>> {
//!     // Locally administered unicast address.
//!     let mut eth = Enc28j60::new(spi, [0x02, 0x00, 0x00, 0x12, 0x34, 0x56])?;
//!     while !eth.link_up()? {}
//!     eth.enable_interrupts()?; // optional: INT goes low while packets are pending
//!     Ok(eth)
//! }
//! ```
//!
//! The driver is then used as a smoltcp device:
//!
//! ```ignore
//! let config = smoltcp::iface::Config::new(EthernetAddress(mac).into());
//! let mut iface = Interface::new(config, &mut eth, now());
//! loop {
//!     iface.poll(now(), &mut eth, &mut sockets);
//!     // sleep until INT or a timer fires
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod regs;

use core::cell::RefCell;
use core::fmt;

use embedded_hal::delay::DelayNs;
use embedded_hal::spi::{Operation, SpiDevice};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

use regs::{econ1, econ2, eie, eir, erxfcon, estat, macon1, macon3, macon4, micmd, mistat};
use regs::{opcode, phcon1, phcon2, phstat2, phy, rsv, Bank, Kind, Reg};

/// Largest Ethernet frame on the wire, FCS included (`MAMXFL`, DS39662E section 6.5 step 4).
pub const MAX_FRAME_LEN: usize = 1518;
/// Largest frame handed to or taken from smoltcp: [`MAX_FRAME_LEN`] without the 4-byte FCS.
/// smoltcp counts the 14-byte Ethernet header in the MTU for `Medium::Ethernet`.
pub const MTU: usize = MAX_FRAME_LEN - FCS_LEN;

const FCS_LEN: usize = 4;
const ETHERNET_HEADER_LEN: usize = 14;

/// First byte of the receive ring. The errata (DS80349, "Memory (Ethernet Buffer)") say the
/// receive write pointer may be loaded with 0000h instead of `ERXST`, so the ring must start
/// at address zero.
pub const RX_START: u16 = 0x0000;
/// Last byte of the receive ring (inclusive). Odd, so that it is a legal `ERXRDPT` value.
pub const RX_END: u16 = 0x19FF;
/// First byte of the transmit buffer: the per-packet control byte goes here.
pub const TX_START: u16 = 0x1A00;
/// Last byte of the 8 KiB buffer memory (DS39662E section 3.2).
pub const BUFFER_END: u16 = 0x1FFF;

const RX_SIZE: u32 = (RX_END - RX_START) as u32 + 1;

/// Full-size frames the receive ring holds at once (header + frame + FCS, even aligned).
const RX_BURST: usize = RX_SIZE as usize / (rsv::HEADER_LEN + MAX_FRAME_LEN);

// The transmit buffer must hold the control byte, a full frame and the status vector.
const _: () = assert!(
    TX_START as usize + 1 + MTU + regs::tsv::LEN <= BUFFER_END as usize + 1,
    "transmit buffer too small"
);
const _: () = assert!(RX_START == 0 && !RX_END.is_multiple_of(2) && RX_END < TX_START);

/// Wait after the soft reset before touching the chip. DS80349 ("Core (Reset)"): after a
/// System Reset Command the PHY clock is stopped but `ESTAT.CLKRDY` is not cleared, so it
/// cannot be polled; wait at least 1 ms instead (DS39662E section 11.2 asks for 50 µs).
const RESET_DELAY_NS: u32 = 1_000_000;
/// `ESTAT.CLKRDY` polls before giving up with [`Error::NotReady`] (section 2.2).
const CLKRDY_POLLS: u32 = 1_000;
/// Delay between two `CLKRDY` polls: 1000 polls cover at least 10 ms.
const CLKRDY_POLL_DELAY_NS: u32 = 10_000;
/// `MISTAT.BUSY` polls (one MII operation takes 10.24 µs, section 3.3; each poll is a
/// 3-byte SPI transaction, about 1.2 µs at 20 MHz).
const MII_POLLS: u32 = 1_000;
/// `ECON1.TXRTS` polls before declaring the transmitter stuck. A 1518-byte frame takes
/// 1.2 ms at 10 Mbit/s; in half duplex, deferral and collision back-off can add tens of
/// milliseconds. 50 000 two-byte transactions take at least 50 ms at 20 MHz.
const TX_POLLS: u32 = 50_000;
/// Bad frames dropped within one [`Device::receive`] call before yielding.
const MAX_DROPS_PER_RECEIVE: u32 = 16;

/// Driver errors, generic over the SPI bus error `E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The SPI device reported an error.
    Spi(E),
    /// `ESTAT.CLKRDY` never became set after the reset (bounded polling).
    NotReady,
    /// `EREVID` read as 0x00 or 0xFF: nothing (or no ENC28J60) answers on the bus.
    NoChip,
    /// `MISTAT.BUSY` never cleared during a PHY register access.
    MiiTimeout,
    /// `ECON1.TXRTS` never cleared; the transmit logic was reset (frame lost).
    TxTimeout,
    /// The receive ring held an impossible next-packet pointer; the receiver was reset and
    /// the frames queued in the chip were discarded.
    RxCorrupt,
    /// smoltcp asked for a frame longer than [`MTU`]; it was not sent.
    FrameTooLarge,
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spi(e) => write!(f, "SPI error: {e:?}"),
            Error::NotReady => f.write_str("ENC28J60 oscillator never became ready (CLKRDY)"),
            Error::NoChip => f.write_str("no ENC28J60 found (EREVID is 0x00 or 0xFF)"),
            Error::MiiTimeout => f.write_str("PHY register access timed out (MISTAT.BUSY)"),
            Error::TxTimeout => f.write_str("transmission never completed (ECON1.TXRTS)"),
            Error::RxCorrupt => f.write_str("receive ring corrupted; receiver reset"),
            Error::FrameTooLarge => f.write_str("frame longer than the MTU"),
        }
    }
}

/// MAC/PHY duplex mode. [`Duplex::Half`] is the default (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplex {
    /// Half duplex: what an auto-negotiating link partner falls back to.
    #[default]
    Half,
    /// Full duplex: only when the link partner is forced to 10 Mbit/s full duplex.
    Full,
}

/// Driver configuration for [`Enc28j60::with_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Duplex mode, applied consistently to the MAC (`MACON3.FULDPX`) and PHY
    /// (`PHCON1.PDPXMD`).
    pub duplex: Duplex,
    /// Also accept multicast frames (`ERXFCON.MCEN`), e.g. for IPv6 or mDNS.
    pub accept_multicast: bool,
    /// Value written to `PHLCON`, or `None` to keep the power-on LED configuration.
    pub led_config: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duplex: Duplex::Half,
            accept_multicast: false,
            led_config: Some(regs::phlcon::LINK_AND_ACTIVITY),
        }
    }
}

/// Frame counters (all wrap around).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames dropped by the driver: receive status not OK, bad length, or discarded by a
    /// receiver reset.
    pub rx_dropped: u32,
    /// Receiver resets after a corrupted receive ring.
    pub rx_resets: u32,
    /// Frames queued for transmission (`ECON1.TXRTS` set).
    pub tx_frames: u32,
    /// Frames smoltcp produced that could not be queued (bus error, too long).
    pub tx_dropped: u32,
    /// Transmissions the chip aborted (`EIR.TXERIF`) or that never finished.
    pub tx_errors: u32,
    /// SPI errors met inside the smoltcp tokens.
    pub spi_errors: u32,
}

/// Everything that talks to the bus; shared by the two smoltcp tokens through a `RefCell`.
struct Bus<SPI: SpiDevice> {
    spi: SPI,
    /// Bank currently selected in `ECON1`, `None` when unknown (after a bus error).
    bank: Option<Bank>,
    /// Start of the next unread packet in the receive ring.
    next_packet: u16,
    /// Packets known to be waiting (a lower bound of `EPKTCNT`, which only the host lowers).
    pending: u8,
    /// `ECON1.TXRTS` was set and its completion has not been checked yet.
    tx_in_flight: bool,
    stats: Stats,
    last_error: Option<Error<SPI::Error>>,
}

/// Header of a received packet that passed the checks.
#[derive(Debug, Clone, Copy)]
struct RxMeta {
    start: u16,
    next: u16,
    len: u16,
}

/// What to do with a packet, judged from its receive status vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Deliver this many bytes (FCS excluded).
    Good(u16),
    /// Skip the packet, its next pointer is trustworthy.
    Drop,
    /// The next pointer is impossible: the ring cannot be walked any further.
    Corrupt,
}

/// `addr + by` inside the receive ring, wrapping from `RX_END` to `RX_START`.
fn rx_advance(addr: u16, by: usize) -> u16 {
    let offset = u32::from(addr.wrapping_sub(RX_START)) % RX_SIZE;
    let by = u32::try_from(by).unwrap_or(u32::MAX) % RX_SIZE;
    let wrapped = (offset + by) % RX_SIZE;
    RX_START.wrapping_add(u16::try_from(wrapped).unwrap_or(0))
}

/// `ERXRDPT` value that frees everything before `next`. DS39662E section 7.2.4 says to write
/// the next packet pointer; the errata (DS80349, "Memory (Ethernet Buffer)": an even
/// `ERXRDPT` may corrupt the ring) require an odd value, so use `next - 1`, or `RX_END` when
/// `next` is the start of the ring. Packets always start at even addresses, so this is odd.
fn rx_read_pointer(next: u16) -> u16 {
    if next == RX_START || next > RX_END {
        RX_END
    } else {
        next.wrapping_sub(1)
    }
}

/// Judge a packet from its header: `start` is where it begins, `next` the next packet
/// pointer and `vector` the 32-bit receive status vector (DS39662E table 7-3).
fn classify(start: u16, next: u16, vector: u32) -> Verdict {
    // The hardware pads every packet to an even length, so a next pointer is always even
    // and inside the ring (section 7.2.2); anything else means the ring is garbage.
    if !(RX_START..=RX_END).contains(&next) || !next.is_multiple_of(2) || next == start {
        return Verdict::Corrupt;
    }
    let byte_count = (vector & 0xFFFF) as u16;
    let footprint = rsv::HEADER_LEN + usize::from(byte_count);
    let padded = footprint + footprint % 2;
    if rx_advance(start, padded) != next {
        // Byte count and next pointer disagree; trust the pointer (the hardware uses it).
        return Verdict::Drop;
    }
    let len = usize::from(byte_count);
    let plausible = (ETHERNET_HEADER_LEN + FCS_LEN..=MAX_FRAME_LEN).contains(&len);
    if vector & rsv::RECEIVED_OK == 0 || !plausible {
        return Verdict::Drop;
    }
    Verdict::Good(byte_count.saturating_sub(FCS_LEN as u16))
}

impl<SPI: SpiDevice> Bus<SPI> {
    fn new(spi: SPI) -> Self {
        Bus {
            spi,
            bank: None,
            next_packet: RX_START,
            pending: 0,
            tx_in_flight: false,
            stats: Stats::default(),
            last_error: None,
        }
    }

    /// Remember an error met where it cannot be returned (inside the tokens).
    fn record(&mut self, error: Error<SPI::Error>) {
        if matches!(error, Error::Spi(_)) {
            self.stats.spi_errors = self.stats.spi_errors.wrapping_add(1);
        }
        self.last_error = Some(error);
    }

    /// One SPI transaction (chip select held low for all operations).
    fn run(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Error<SPI::Error>> {
        match self.spi.transaction(ops) {
            Ok(()) => Ok(()),
            Err(e) => {
                // A failed transaction may or may not have switched banks.
                self.bank = None;
                Err(Error::Spi(e))
            }
        }
    }

    fn command(&mut self, bytes: &[u8]) -> Result<(), Error<SPI::Error>> {
        self.run(&mut [Operation::Write(bytes)])
    }

    fn delay(
        &mut self,
        delay: &mut Option<&mut dyn DelayNs>,
        ns: u32,
    ) -> Result<(), Error<SPI::Error>> {
        match delay {
            Some(d) => {
                d.delay_ns(ns);
                Ok(())
            }
            None => self.run(&mut [Operation::DelayNs(ns)]),
        }
    }

    /// Select the bank of `reg` with BFC/BFS on `ECON1.BSEL1:BSEL0` (section 3.1). BFC/BFS
    /// leave the other `ECON1` bits (notably `TXRTS` and `RXEN`) untouched.
    fn select(&mut self, reg: Reg) -> Result<(), Error<SPI::Error>> {
        let Some(want) = reg.bank else {
            return Ok(());
        };
        if self.bank == Some(want) {
            return Ok(());
        }
        let (clear, set) = match self.bank {
            Some(current) => (current.bits() & !want.bits(), want.bits() & !current.bits()),
            None => (econ1::BSEL_MASK, want.bits()),
        };
        if clear != 0 {
            self.command(&[opcode::BFC | regs::ECON1.addr, clear])?;
        }
        if set != 0 {
            self.command(&[opcode::BFS | regs::ECON1.addr, set])?;
        }
        self.bank = Some(want);
        Ok(())
    }

    /// RCR (section 4.2.1): MAC and MII registers shift out a dummy byte first.
    fn read(&mut self, reg: Reg) -> Result<u8, Error<SPI::Error>> {
        self.select(reg)?;
        let op = opcode::RCR | (reg.addr & opcode::ARG_MASK);
        match reg.kind {
            Kind::Eth => {
                let mut bytes = [op, 0];
                self.run(&mut [Operation::TransferInPlace(&mut bytes)])?;
                let [_, value] = bytes;
                Ok(value)
            }
            Kind::MacMii => {
                let mut bytes = [op, 0, 0];
                self.run(&mut [Operation::TransferInPlace(&mut bytes)])?;
                let [_, _dummy, value] = bytes;
                Ok(value)
            }
        }
    }

    /// WCR (section 4.2.4).
    fn write(&mut self, reg: Reg, value: u8) -> Result<(), Error<SPI::Error>> {
        self.select(reg)?;
        self.command(&[opcode::WCR | (reg.addr & opcode::ARG_MASK), value])
    }

    /// BFS (section 4.2.5); ETH registers only.
    fn set_bits(&mut self, reg: Reg, mask: u8) -> Result<(), Error<SPI::Error>> {
        self.select(reg)?;
        self.command(&[opcode::BFS | (reg.addr & opcode::ARG_MASK), mask])
    }

    /// BFC (section 4.2.6); ETH registers only.
    fn clear_bits(&mut self, reg: Reg, mask: u8) -> Result<(), Error<SPI::Error>> {
        self.select(reg)?;
        self.command(&[opcode::BFC | (reg.addr & opcode::ARG_MASK), mask])
    }

    /// Write a 16-bit register pair, low byte first (required for `ERXRDPT` and `MIWR`).
    fn write_pair(&mut self, low: Reg, high: Reg, value: u16) -> Result<(), Error<SPI::Error>> {
        let [l, h] = value.to_le_bytes();
        self.write(low, l)?;
        self.write(high, h)
    }

    /// RBM (section 4.2.2) from `ERDPT`, which auto-increments and wraps from `ERXND` to
    /// `ERXST` inside the receive ring (section 3.2.1).
    fn read_buffer(&mut self, buf: &mut [u8]) -> Result<(), Error<SPI::Error>> {
        if buf.is_empty() {
            return Ok(());
        }
        self.run(&mut [Operation::Write(&[opcode::RBM]), Operation::Read(buf)])
    }

    /// MII read of a PHY register (section 3.3.1).
    fn phy_read(&mut self, addr: u8) -> Result<u16, Error<SPI::Error>> {
        self.write(regs::MIREGADR, addr)?;
        self.write(regs::MICMD, micmd::MIIRD)?;
        self.mii_wait()?;
        self.write(regs::MICMD, 0)?;
        let low = self.read(regs::MIRDL)?;
        let high = self.read(regs::MIRDH)?;
        Ok(u16::from_le_bytes([low, high]))
    }

    /// MII write of a PHY register (section 3.3.2): writing `MIWRH` starts the operation.
    fn phy_write(&mut self, addr: u8, value: u16) -> Result<(), Error<SPI::Error>> {
        self.write(regs::MIREGADR, addr)?;
        self.write_pair(regs::MIWRL, regs::MIWRH, value)?;
        self.mii_wait()
    }

    fn mii_wait(&mut self) -> Result<(), Error<SPI::Error>> {
        for _ in 0..MII_POLLS {
            if self.read(regs::MISTAT)? & mistat::BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::MiiTimeout)
    }

    /// Soft reset and initialisation (DS39662E section 6 and section 11.2). Returns the
    /// silicon revision.
    fn init(
        &mut self,
        mac: &[u8; 6],
        config: &Config,
        mut delay: Option<&mut dyn DelayNs>,
    ) -> Result<u8, Error<SPI::Error>> {
        self.bank = None;
        self.command(&[opcode::SRC])?;
        // The reset clears ECON1, hence BSEL = bank 0; the ring starts over.
        self.bank = Some(Bank::B0);
        self.next_packet = RX_START;
        self.pending = 0;
        self.tx_in_flight = false;

        // DS80349 "Core (Reset)": CLKRDY is not cleared by the SRC; wait 1 ms first.
        self.delay(&mut delay, RESET_DELAY_NS)?;
        // Section 2.2: no register other than ESTAT may be used before CLKRDY is set.
        let mut ready = false;
        for attempt in 0..CLKRDY_POLLS {
            if attempt != 0 {
                self.delay(&mut delay, CLKRDY_POLL_DELAY_NS)?;
            }
            if self.read(regs::ESTAT)? & estat::CLKRDY != 0 {
                ready = true;
                break;
            }
        }
        if !ready {
            return Err(Error::NotReady);
        }

        let revision = self.read(regs::EREVID)?;
        if revision == 0x00 || revision == 0xFF {
            return Err(Error::NoChip);
        }

        // Section 6.1: receive buffer. ERXST = 0 (errata), ERXRDPT odd (errata).
        self.write_pair(regs::ERXSTL, regs::ERXSTH, RX_START)?;
        self.write_pair(regs::ERXNDL, regs::ERXNDH, RX_END)?;
        self.write_pair(regs::ERXRDPTL, regs::ERXRDPTH, rx_read_pointer(RX_START))?;
        // Section 6.2: the transmit buffer is the rest of the memory.
        self.write_pair(regs::ETXSTL, regs::ETXSTH, TX_START)?;
        self.write_pair(regs::ETXNDL, regs::ETXNDH, TX_START)?;
        self.set_bits(regs::ECON2, econ2::AUTOINC)?;

        // Section 6.3 / section 8: unicast to us + broadcast, CRC checked by the hardware.
        let mut filter = erxfcon::UCEN | erxfcon::CRCEN | erxfcon::BCEN;
        if config.accept_multicast {
            filter |= erxfcon::MCEN;
        }
        self.write(regs::ERXFCON, filter)?;

        // Section 6.5: MAC.
        let full = config.duplex == Duplex::Full;
        let mut mac1 = macon1::MARXEN;
        let mut mac3 = macon3::PADCFG_60 | macon3::TXCRCEN | macon3::FRMLNEN;
        if full {
            mac1 |= macon1::TXPAUS | macon1::RXPAUS;
            mac3 |= macon3::FULDPX;
        }
        self.write(regs::MACON1, mac1)?;
        self.write(regs::MACON3, mac3)?;
        self.write(regs::MACON4, if full { 0 } else { macon4::DEFER })?;
        self.write_pair(regs::MAMXFLL, regs::MAMXFLH, MAX_FRAME_LEN as u16)?;
        self.write(
            regs::MABBIPG,
            if full { regs::MABBIPG_FULL_DUPLEX } else { regs::MABBIPG_HALF_DUPLEX },
        )?;
        self.write(regs::MAIPGL, regs::MAIPGL_DEFAULT)?;
        if !full {
            self.write(regs::MAIPGH, regs::MAIPGH_HALF_DUPLEX)?;
        }
        for (reg, byte) in regs::MAADR_WIRE_ORDER.iter().zip(mac.iter()) {
            self.write(*reg, *byte)?;
        }

        // Section 6.6: PHY duplex must match MACON3.FULDPX; no half-duplex self loopback.
        self.phy_write(phy::PHCON1, if full { phcon1::PDPXMD } else { 0 })?;
        self.phy_write(phy::PHCON2, phcon2::HDLDIS)?;
        if let Some(leds) = config.led_config {
            self.phy_write(phy::PHLCON, leds)?;
        }

        // Start clean and enable reception (section 7.2).
        self.clear_bits(
            regs::EIR,
            eir::DMAIF | eir::LINKIF | eir::TXIF | eir::TXERIF | eir::RXERIF,
        )?;
        self.set_bits(regs::ECON1, econ1::RXEN)?;
        Ok(revision)
    }

    /// Find the next good frame, dropping bad ones (section 7.2.3). `Ok(None)` when
    /// `EPKTCNT` is zero.
    fn next_frame(&mut self) -> Result<Option<RxMeta>, Error<SPI::Error>> {
        for _ in 0..MAX_DROPS_PER_RECEIVE {
            if self.pending == 0 {
                self.pending = self.read(regs::EPKTCNT)?;
                if self.pending == 0 {
                    return Ok(None);
                }
            }
            let start = self.next_packet;
            self.write_pair(regs::ERDPTL, regs::ERDPTH, start)?;
            let mut header = [0u8; rsv::HEADER_LEN];
            self.read_buffer(&mut header)?;
            let [n0, n1, v0, v1, v2, v3] = header;
            let next = u16::from_le_bytes([n0, n1]);
            let vector = u32::from_le_bytes([v0, v1, v2, v3]);
            match classify(start, next, vector) {
                Verdict::Good(len) => return Ok(Some(RxMeta { start, next, len })),
                Verdict::Drop => {
                    self.free_packet(next)?;
                    self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(1);
                }
                Verdict::Corrupt => {
                    self.reset_receiver()?;
                    return Err(Error::RxCorrupt);
                }
            }
        }
        Ok(None)
    }

    /// Copy a frame found by [`Bus::next_frame`] into `buf` and free its ring space.
    fn read_frame(&mut self, meta: &RxMeta, buf: &mut [u8]) -> Result<usize, Error<SPI::Error>> {
        let len = usize::from(meta.len);
        let dst = buf.get_mut(..len).ok_or(Error::FrameTooLarge)?;
        self.write_pair(regs::ERDPTL, regs::ERDPTH, rx_advance(meta.start, rsv::HEADER_LEN))?;
        self.read_buffer(dst)?;
        self.free_packet(meta.next)?;
        self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
        Ok(len)
    }

    /// Release the packet in front of `next` (section 7.2.4): decrement `EPKTCNT` with
    /// `ECON2.PKTDEC`, then move `ERXRDPT` to the odd address just before `next`.
    ///
    /// `PKTDEC` goes first: if it fails nothing changed and the packet is read again; once
    /// it succeeded the packet is gone, and a failed `ERXRDPT` write only delays freeing the
    /// space until the next packet is released.
    fn free_packet(&mut self, next: u16) -> Result<(), Error<SPI::Error>> {
        self.set_bits(regs::ECON2, econ2::PKTDEC)?;
        self.next_packet = next;
        self.pending = self.pending.saturating_sub(1);
        if let Err(e) = self.write_pair(regs::ERXRDPTL, regs::ERXRDPTH, rx_read_pointer(next)) {
            self.record(e);
        }
        Ok(())
    }

    /// Receive-only reset (section 11.4) after a corrupted ring: discard what is queued and
    /// restart the ring at `RX_START`.
    fn reset_receiver(&mut self) -> Result<(), Error<SPI::Error>> {
        self.stats.rx_resets = self.stats.rx_resets.wrapping_add(1);
        self.clear_bits(regs::ECON1, econ1::RXEN)?;
        self.set_bits(regs::ECON1, econ1::RXRST)?;
        self.clear_bits(regs::ECON1, econ1::RXRST)?;
        // Writing ERXST also moves the hardware write pointer to it (section 6.1).
        self.write_pair(regs::ERXSTL, regs::ERXSTH, RX_START)?;
        self.write_pair(regs::ERXNDL, regs::ERXNDH, RX_END)?;
        self.write_pair(regs::ERXRDPTL, regs::ERXRDPTH, rx_read_pointer(RX_START))?;
        let queued = self.read(regs::EPKTCNT)?;
        for _ in 0..queued {
            self.set_bits(regs::ECON2, econ2::PKTDEC)?;
        }
        self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(u32::from(queued));
        self.next_packet = RX_START;
        self.pending = 0;
        self.set_bits(regs::ECON1, econ1::RXEN)
    }

    /// Transmit logic reset: DS80349 "Transmit Logic" work-around. After an abort
    /// (`EIR.TXERIF`) the transmit logic may stall with `TXRTS` set forever; pulse
    /// `ECON1.TXRST` and clear the flags, which the reset itself may set again.
    fn reset_transmitter(&mut self) -> Result<(), Error<SPI::Error>> {
        self.set_bits(regs::ECON1, econ1::TXRST)?;
        self.clear_bits(regs::ECON1, econ1::TXRST)?;
        self.clear_bits(regs::EIR, eir::TXERIF | eir::TXIF)
    }

    /// Wait (bounded) for the previous frame to leave, then apply the errata work-around.
    fn finish_previous_tx(&mut self) -> Result<(), Error<SPI::Error>> {
        if !self.tx_in_flight {
            return Ok(());
        }
        let mut idle = false;
        for _ in 0..TX_POLLS {
            if self.read(regs::ECON1)? & econ1::TXRTS == 0 {
                idle = true;
                break;
            }
        }
        if idle {
            if self.read(regs::EIR)? & eir::TXERIF != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
                self.reset_transmitter()?;
            }
        } else {
            self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            self.last_error = Some(Error::TxTimeout);
            // Clearing TXRTS aborts the stuck transmission (section 7.1).
            self.clear_bits(regs::ECON1, econ1::TXRTS)?;
            self.reset_transmitter()?;
        }
        self.tx_in_flight = false;
        Ok(())
    }

    /// Queue one frame (section 7.1): control byte + frame at `TX_START`, `ETXST`/`ETXND`,
    /// then `ECON1.TXRTS`. Returns once the frame is queued, not sent.
    fn send(&mut self, frame: &[u8]) -> Result<(), Error<SPI::Error>> {
        let len = u16::try_from(frame.len())
            .ok()
            .filter(|&len| usize::from(len) <= MTU)
            .ok_or(Error::FrameTooLarge)?;
        // The transmit buffer must not change while the previous frame is being sent.
        self.finish_previous_tx()?;
        self.write_pair(regs::EWRPTL, regs::EWRPTH, TX_START)?;
        self.run(&mut [
            Operation::Write(&[opcode::WBM, regs::control::USE_MACON3]),
            Operation::Write(frame),
        ])?;
        self.write_pair(regs::ETXSTL, regs::ETXSTH, TX_START)?;
        // ETXND is the last byte of the frame; the control byte sits at ETXST.
        self.write_pair(regs::ETXNDL, regs::ETXNDH, TX_START.wrapping_add(len))?;
        self.set_bits(regs::ECON1, econ1::TXRTS)?;
        self.tx_in_flight = true;
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        Ok(())
    }
}

/// ENC28J60 driver; implements [`smoltcp::phy::Device`] for `Medium::Ethernet`.
pub struct Enc28j60<SPI: SpiDevice> {
    bus: RefCell<Bus<SPI>>,
    mac: [u8; 6],
    config: Config,
    revision: u8,
    rx_buf: [u8; MAX_FRAME_LEN],
    tx_buf: [u8; MTU],
}

impl<SPI: SpiDevice> Enc28j60<SPI> {
    /// Reset and initialise the chip with [`Config::default`] (half duplex, unicast +
    /// broadcast). Start-up waits use `Operation::DelayNs` on the SPI device.
    ///
    /// Errors: [`Error::Spi`] from the bus, [`Error::NotReady`] if the oscillator never
    /// becomes ready, [`Error::NoChip`] if `EREVID` reads 0x00 or 0xFF,
    /// [`Error::MiiTimeout`] if the PHY does not answer.
    pub fn new(spi: SPI, mac: [u8; 6]) -> Result<Self, Error<SPI::Error>> {
        Self::with_config(spi, mac, Config::default(), None)
    }

    /// Like [`Enc28j60::new`] with an explicit configuration. If `delay` is given it is used
    /// for the start-up waits instead of `Operation::DelayNs` (for SPI devices that cannot
    /// delay, such as embedded-hal-bus devices built with `new_no_delay`).
    pub fn with_config(
        spi: SPI,
        mac: [u8; 6],
        config: Config,
        delay: Option<&mut dyn DelayNs>,
    ) -> Result<Self, Error<SPI::Error>> {
        let mut dev = Enc28j60 {
            bus: RefCell::new(Bus::new(spi)),
            mac,
            config,
            revision: 0,
            rx_buf: [0; MAX_FRAME_LEN],
            tx_buf: [0; MTU],
        };
        dev.reinit(delay)?;
        Ok(dev)
    }

    /// Reset and initialise the chip again (same MAC address and configuration), e.g. when
    /// the error counters suggest it has locked up. Frames queued in the chip are lost.
    pub fn reinit(&mut self, delay: Option<&mut dyn DelayNs>) -> Result<(), Error<SPI::Error>> {
        self.revision = self.bus.get_mut().init(&self.mac, &self.config, delay)?;
        Ok(())
    }

    /// Silicon revision read from `EREVID` during initialisation (B7 silicon: 0x06).
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// The MAC address programmed into `MAADR1..MAADR6`.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether the PHY reports a link (`PHSTAT2.LSTAT`, read through the MII registers).
    pub fn link_up(&mut self) -> Result<bool, Error<SPI::Error>> {
        Ok(self.read_phy(phy::PHSTAT2)? & phstat2::LSTAT != 0)
    }

    /// Read a PHY register (addresses in [`regs::phy`]).
    pub fn read_phy(&mut self, addr: u8) -> Result<u16, Error<SPI::Error>> {
        self.bus.get_mut().phy_read(addr)
    }

    /// Number of received packets waiting in the chip (`EPKTCNT`).
    pub fn pending_packets(&mut self) -> Result<u8, Error<SPI::Error>> {
        let bus = self.bus.get_mut();
        let count = bus.read(regs::EPKTCNT)?;
        bus.pending = count;
        Ok(count)
    }

    /// Enable the INT pin for "packet pending" (`EIE.INTIE` + `EIE.PKTIE`). INT stays low
    /// while `EPKTCNT` is non-zero, i.e. until smoltcp has drained the chip.
    pub fn enable_interrupts(&mut self) -> Result<(), Error<SPI::Error>> {
        self.bus.get_mut().set_bits(regs::EIE, eie::INTIE | eie::PKTIE)
    }

    /// Disable the INT pin again.
    pub fn disable_interrupts(&mut self) -> Result<(), Error<SPI::Error>> {
        self.bus.get_mut().clear_bits(regs::EIE, eie::INTIE | eie::PKTIE)
    }

    /// Frame counters.
    pub fn stats(&self) -> Stats {
        self.bus.try_borrow().map(|bus| bus.stats).unwrap_or_default()
    }

    /// The last error met inside the smoltcp tokens (which cannot return errors).
    pub fn last_error(&mut self) -> Option<&Error<SPI::Error>> {
        self.bus.get_mut().last_error.as_ref()
    }

    /// Take (and clear) the last error met inside the smoltcp tokens.
    pub fn take_last_error(&mut self) -> Option<Error<SPI::Error>> {
        self.bus.get_mut().last_error.take()
    }

    /// Give the SPI device back. The chip keeps receiving into its ring.
    pub fn release(self) -> SPI {
        self.bus.into_inner().spi
    }
}

impl<SPI: SpiDevice> fmt::Debug for Enc28j60<SPI> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enc28j60")
            .field("mac", &self.mac)
            .field("revision", &self.revision)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Receive token: reads the frame out of the chip when consumed.
pub struct Enc28j60RxToken<'a, SPI: SpiDevice> {
    bus: &'a RefCell<Bus<SPI>>,
    buf: &'a mut [u8; MAX_FRAME_LEN],
    meta: RxMeta,
}

/// Transmit token: queues the frame in the chip when consumed.
pub struct Enc28j60TxToken<'a, SPI: SpiDevice> {
    bus: &'a RefCell<Bus<SPI>>,
    buf: &'a mut [u8; MTU],
}

impl<SPI: SpiDevice> RxToken for Enc28j60RxToken<'_, SPI> {
    /// Calls `f` with the frame (FCS excluded). On a bus error `f` gets an empty slice (which
    /// smoltcp ignores), the error is recorded and the frame stays in the chip.
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let Enc28j60RxToken { bus, buf, meta } = self;
        // The bus borrow ends before `f` runs: smoltcp consumes the TxToken inside `f`.
        let len = match bus.try_borrow_mut() {
            Ok(mut bus) => match bus.read_frame(&meta, buf) {
                Ok(len) => len,
                Err(e) => {
                    bus.record(e);
                    0
                }
            },
            Err(_) => 0,
        };
        f(buf.get(..len).unwrap_or(&[]))
    }
}

impl<SPI: SpiDevice> TxToken for Enc28j60TxToken<'_, SPI> {
    /// Lets `f` build the frame in the driver's buffer, then queues it. Errors (bus, frame
    /// longer than [`MTU`]) are counted in [`Stats::tx_dropped`] and recorded.
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Enc28j60TxToken { bus, buf } = self;
        let frame = buf.get_mut(..len.min(MTU)).unwrap_or(&mut []);
        let result = f(frame);
        if let Ok(mut bus) = bus.try_borrow_mut() {
            let sent = if len > MTU { Err(Error::FrameTooLarge) } else { bus.send(frame) };
            if let Err(e) = sent {
                bus.stats.tx_dropped = bus.stats.tx_dropped.wrapping_add(1);
                bus.record(e);
            }
        }
        result
    }
}

impl<SPI: SpiDevice> Device for Enc28j60<SPI> {
    type RxToken<'a>
        = Enc28j60RxToken<'a, SPI>
    where
        Self: 'a;
    type TxToken<'a>
        = Enc28j60TxToken<'a, SPI>
    where
        Self: 'a;

    /// Returns tokens only when `EPKTCNT` says a good frame is waiting; bad frames in front
    /// of it are dropped here.
    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let bus = self.bus.get_mut();
        let meta = match bus.next_frame() {
            Ok(Some(meta)) => meta,
            Ok(None) => return None,
            Err(e) => {
                bus.record(e);
                return None;
            }
        };
        let bus = &self.bus;
        Some((
            Enc28j60RxToken { bus, buf: &mut self.rx_buf, meta },
            Enc28j60TxToken { bus, buf: &mut self.tx_buf },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(Enc28j60TxToken { bus: &self.bus, buf: &mut self.tx_buf })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(RX_BURST);
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u32 = rsv::RECEIVED_OK;

    #[test]
    fn ring_arithmetic() {
        assert_eq!(rx_advance(0, 6), 6);
        assert_eq!(rx_advance(RX_END, 1), RX_START);
        assert_eq!(rx_advance(RX_END - 1, 8), 6);
        assert_eq!(rx_read_pointer(RX_START), RX_END);
        assert_eq!(rx_read_pointer(0x100), 0xFF);
        assert_eq!(RX_BURST, 4);
    }

    #[test]
    fn classify_frames() {
        // 60-byte frame + FCS = 64, + 6 header = 70 (even).
        assert_eq!(classify(0, 70, OK | 64), Verdict::Good(60));
        // 61 + 4 + 6 = 71, padded to 72.
        assert_eq!(classify(0, 72, OK | 65), Verdict::Good(61));
        // Wrap-around.
        let start = RX_END - 9;
        assert_eq!(classify(start, rx_advance(start, 70), OK | 64), Verdict::Good(60));
        assert_eq!(classify(0, 70, 64), Verdict::Drop);
        assert_eq!(classify(0, 72, OK | 64), Verdict::Drop);
        assert_eq!(classify(0, 71, OK | 64), Verdict::Corrupt);
        assert_eq!(classify(0, 0x1A00, OK | 64), Verdict::Corrupt);
        assert_eq!(classify(0, 0, OK | 64), Verdict::Corrupt);
        let huge = 1600;
        assert_eq!(classify(0, (6 + huge) as u16, OK | huge as u32), Verdict::Drop);
    }
}
