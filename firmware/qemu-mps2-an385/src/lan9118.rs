//! SMSC LAN9118 (LAN9220 family) Ethernet controller of the MPS2 boards as a
//! [`smoltcp::phy::Device`].
//!
//! The chip has a receive data FIFO with a status FIFO beside it (one
//! status word per frame: length and error bits), and a transmit data FIFO
//! that takes two command words and then the frame. MAC registers sit
//! behind an indirect `MAC_CSR_CMD`/`MAC_CSR_DATA` pair. The driver reads a
//! whole frame into its receive buffer when smoltcp asks for one, and
//! writes a frame straight into the transmit FIFO.
//!
//! With [`Lan9118::enable_interrupts`] the chip raises its interrupt (IRQ 13
//! on the MPS2-AN385) when a frame's status enters the status FIFO, so the
//! CPU can sleep (WFI) between frames. QEMU's model keeps 10,560 bytes of
//! receive FIFO and drops frames that do not fit: the eight pieces of one
//! fragment (frames of about 1.2 KB) fit, and the stack reads the frames
//! one at a time as the node handles them.
//!
//! RAM: two 1536-byte frame buffers.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::mmio::Reg;

/// Where the MPS2-AN385 maps the controller.
pub const BASE: usize = 0x4020_0000;
/// Its interrupt line on the NVIC.
pub const IRQ: u16 = 13;

const RX_DATA_FIFO: Reg = Reg::at(BASE, 0x00);
const TX_DATA_FIFO: Reg = Reg::at(BASE, 0x20);
const RX_STATUS_FIFO: Reg = Reg::at(BASE, 0x40);
const ID_REV: Reg = Reg::at(BASE, 0x50);
const IRQ_CFG: Reg = Reg::at(BASE, 0x54);
const INT_STS: Reg = Reg::at(BASE, 0x58);
const INT_EN: Reg = Reg::at(BASE, 0x5C);
const BYTE_TEST: Reg = Reg::at(BASE, 0x64);
const FIFO_INT: Reg = Reg::at(BASE, 0x68);
const RX_CFG: Reg = Reg::at(BASE, 0x6C);
const TX_CFG: Reg = Reg::at(BASE, 0x70);
const HW_CFG: Reg = Reg::at(BASE, 0x74);
const RX_DP_CTRL: Reg = Reg::at(BASE, 0x78);
const RX_FIFO_INF: Reg = Reg::at(BASE, 0x7C);
const TX_FIFO_INF: Reg = Reg::at(BASE, 0x80);
const PMT_CTRL: Reg = Reg::at(BASE, 0x84);
const MAC_CSR_CMD: Reg = Reg::at(BASE, 0xA4);
const MAC_CSR_DATA: Reg = Reg::at(BASE, 0xA8);

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const TX_CFG_TX_ON: u32 = 1 << 1;
const RX_DP_CTRL_FFWD: u32 = 1 << 31;
const IRQ_CFG_ENABLE_ACTIVE_HIGH_PUSH_PULL: u32 = (1 << 8) | (1 << 4) | 1;
/// RX status FIFO level interrupt: a frame has arrived.
const INT_RSFL: u32 = 1 << 3;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_FDPX: u32 = 1 << 20;
const RX_STATUS_ERROR: u32 = 1 << 15;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;

/// Largest frame handled (without the CRC).
pub const MAX_FRAME: usize = 1536;
/// Polls of a register that should settle at once in the emulator.
const SPINS: u32 = 100_000;

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: no LAN9118 at [`BASE`].
    NotPresent(u32),
    /// The soft reset did not complete.
    ResetTimeout,
    /// A MAC register access did not complete.
    MacTimeout,
}

/// What the driver saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames the chip flagged as bad or too long, skipped.
    pub rx_errors: u32,
    /// Frames sent.
    pub tx_frames: u32,
    /// Frames dropped because the transmit FIFO stayed full.
    pub tx_dropped: u32,
}

/// The controller and its frame buffers.
pub struct Lan9118 {
    rx: [u8; MAX_FRAME],
    tx: [u8; MAX_FRAME],
    stats: Stats,
}

impl Lan9118 {
    /// The driver before [`Lan9118::init`] (a `const fn`, so it can sit in
    /// a static).
    pub const fn new() -> Self {
        Lan9118 {
            rx: [0; MAX_FRAME],
            tx: [0; MAX_FRAME],
            stats: Stats { rx_frames: 0, rx_errors: 0, tx_frames: 0, tx_dropped: 0 },
        }
    }

    /// Resets the chip and starts it with Ethernet address `mac`: full
    /// duplex, unicast to `mac` and broadcast only.
    pub fn init(&mut self, mac: [u8; 6]) -> Result<u32, InitError> {
        let test = BYTE_TEST.read();
        if test != BYTE_TEST_VALUE {
            return Err(InitError::NotPresent(test));
        }
        HW_CFG.write(HW_CFG_SRST);
        spin_until(|| HW_CFG.read() & HW_CFG_SRST == 0).ok_or(InitError::ResetTimeout)?;
        spin_until(|| PMT_CTRL.read() & PMT_CTRL_READY != 0).ok_or(InitError::ResetTimeout)?;
        let [a, b, c, d, e, f] = mac;
        mac_write(MAC_ADDRL, u32::from_le_bytes([a, b, c, d]))?;
        mac_write(MAC_ADDRH, u32::from_le_bytes([e, f, 0, 0]))?;
        // Clearing PRMS (set by reset) makes the MAC filter on our address.
        mac_write(MAC_CR, MAC_CR_RXEN | MAC_CR_TXEN | MAC_CR_FDPX)?;
        RX_CFG.write(0);
        TX_CFG.write(TX_CFG_TX_ON);
        // Interrupt when more than 0 status words wait (any frame).
        FIFO_INT.write(FIFO_INT.read() & !0xFF);
        INT_STS.write(u32::MAX);
        Ok(ID_REV.read())
    }

    /// Raises the interrupt line while received frames wait.
    pub fn enable_interrupts(&mut self) {
        IRQ_CFG.write(IRQ_CFG_ENABLE_ACTIVE_HIGH_PUSH_PULL);
        INT_EN.write(INT_RSFL);
    }

    /// Acknowledges the receive interrupt (from the interrupt handler; the
    /// main loop then reads every waiting frame).
    pub fn acknowledge_interrupt() {
        INT_STS.write(INT_RSFL);
    }

    /// Whether frames wait in the receive FIFO.
    pub fn rx_pending() -> bool {
        rx_status_count() > 0
    }

    /// What the driver saw so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Reads the next good frame into the receive buffer; its length.
    fn read_frame(&mut self) -> Option<usize> {
        while rx_status_count() > 0 {
            let status = RX_STATUS_FIFO.read();
            // The length includes the 4-byte CRC, which the FIFO holds too.
            let len = ((status >> 16) & 0x3FFF) as usize;
            let words = len.div_ceil(4);
            if status & RX_STATUS_ERROR != 0 || !(18..=MAX_FRAME).contains(&len) {
                self.stats.rx_errors += 1;
                skip_words(words);
                continue;
            }
            let frame = len - 4;
            let mut at = 0;
            for _ in 0..words {
                let word = RX_DATA_FIFO.read().to_le_bytes();
                for byte in word {
                    if at < frame {
                        if let Some(slot) = self.rx.get_mut(at) {
                            *slot = byte;
                        }
                    }
                    at += 1;
                }
            }
            self.stats.rx_frames += 1;
            return Some(frame);
        }
        None
    }
}

impl Default for Lan9118 {
    fn default() -> Self {
        Self::new()
    }
}

fn rx_status_count() -> u32 {
    (RX_FIFO_INF.read() >> 16) & 0xFF
}

/// Discards `words` of a frame from the receive data FIFO.
fn skip_words(words: usize) {
    if words >= 4 {
        RX_DP_CTRL.write(RX_DP_CTRL_FFWD);
        let _ = spin_until(|| RX_DP_CTRL.read() & RX_DP_CTRL_FFWD == 0);
    } else {
        for _ in 0..words {
            let _ = RX_DATA_FIFO.read();
        }
    }
}

fn spin_until(mut done: impl FnMut() -> bool) -> Option<()> {
    for _ in 0..SPINS {
        if done() {
            return Some(());
        }
    }
    None
}

fn mac_write(register: u32, value: u32) -> Result<(), InitError> {
    spin_until(|| MAC_CSR_CMD.read() & MAC_CSR_BUSY == 0).ok_or(InitError::MacTimeout)?;
    MAC_CSR_DATA.write(value);
    MAC_CSR_CMD.write(MAC_CSR_BUSY | register);
    spin_until(|| MAC_CSR_CMD.read() & MAC_CSR_BUSY == 0).ok_or(InitError::MacTimeout)
}

/// A received frame, borrowed from the driver's receive buffer.
pub struct RxToken<'a>(&'a [u8]);

/// Room for one frame to send.
pub struct TxToken<'a> {
    buf: &'a mut [u8; MAX_FRAME],
    stats: &'a mut Stats,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let frame = self.buf.get_mut(..len).unwrap_or(&mut []);
        let result = f(frame);
        // Command words, then the frame in little-endian words.
        let needed = (len.div_ceil(4) + 2) * 4;
        if spin_until(|| (TX_FIFO_INF.read() & 0xFFFF) as usize >= needed).is_none() {
            self.stats.tx_dropped += 1;
            return result;
        }
        TX_DATA_FIFO.write(TX_CMD_A_FIRST | TX_CMD_A_LAST | len as u32);
        TX_DATA_FIFO.write(len as u32);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            for (w, b) in word.iter_mut().zip(chunk) {
                *w = *b;
            }
            TX_DATA_FIFO.write(u32::from_le_bytes(word));
        }
        self.stats.tx_frames += 1;
        result
    }
}

impl Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.read_frame()?;
        let Lan9118 { rx, tx, stats } = self;
        Some((RxToken(rx.get(..len).unwrap_or(&[])), TxToken { buf: tx, stats }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { buf: &mut self.tx, stats: &mut self.stats })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.max_burst_size = Some(1);
        caps
    }
}
