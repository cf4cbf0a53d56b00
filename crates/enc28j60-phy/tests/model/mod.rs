//! A register-level model of the ENC28J60, written from the data sheet (DS39662E) and
//! independent of the driver's register definitions, exposed as an
//! `embedded_hal::spi::SpiDevice`.
//!
//! The model decodes every SPI transaction byte by byte (section 4, table 4-1), keeps the
//! four register banks selected by `ECON1.BSEL`, the 8 KiB buffer memory with the
//! auto-incrementing `ERDPT`/`EWRPT` (and the `ERDPT` wrap from `ERXND` to `ERXST`), the PHY
//! registers behind `MIREGADR`/`MICMD`/`MIRD`/`MIWR` with `MISTAT.BUSY`, `EPKTCNT`, a
//! receive ring fed by [`Chip::inject`] and a transmitter that collects frames when
//! `ECON1.TXRTS` is set.
//!
//! Anything the data sheet or the errata forbid makes the model panic with a message that
//! starts with "protocol violation", which fails the test that caused it.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_hal::spi::{self, ErrorKind, ErrorType, Operation, SpiDevice};

pub const MEM_SIZE: usize = 0x2000;
const MEM_LAST: u16 = 0x1FFF;

// Common registers.
const EIE: u8 = 0x1B;
const EIR: u8 = 0x1C;
const ESTAT: u8 = 0x1D;
const ECON2: u8 = 0x1E;
const ECON1: u8 = 0x1F;

// Bank 0.
const ERDPTL: u8 = 0x00;
const ERDPTH: u8 = 0x01;
const EWRPTL: u8 = 0x02;
const EWRPTH: u8 = 0x03;
const ETXSTL: u8 = 0x04;
const ETXSTH: u8 = 0x05;
const ETXNDL: u8 = 0x06;
const ETXNDH: u8 = 0x07;
const ERXSTL: u8 = 0x08;
const ERXSTH: u8 = 0x09;
const ERXNDL: u8 = 0x0A;
const ERXNDH: u8 = 0x0B;
const ERXRDPTL: u8 = 0x0C;
const ERXRDPTH: u8 = 0x0D;
const ERXWRPTL: u8 = 0x0E;
const ERXWRPTH: u8 = 0x0F;

// Bank 1.
const ERXFCON: u8 = 0x18;
const EPKTCNT: u8 = 0x19;

// Bank 2.
const MACON1: u8 = 0x00;
const MACON3: u8 = 0x02;
const MACON4: u8 = 0x03;
const MABBIPG: u8 = 0x04;
const MAIPGL: u8 = 0x06;
const MAIPGH: u8 = 0x07;
const MAMXFLL: u8 = 0x0A;
const MAMXFLH: u8 = 0x0B;
const MICMD: u8 = 0x12;
const MIREGADR: u8 = 0x14;
const MIWRL: u8 = 0x16;
const MIWRH: u8 = 0x17;
const MIRDL: u8 = 0x18;
const MIRDH: u8 = 0x19;

// Bank 3.
const MAADR5: u8 = 0x00;
const MAADR6: u8 = 0x01;
const MAADR3: u8 = 0x02;
const MAADR4: u8 = 0x03;
const MAADR1: u8 = 0x04;
const MAADR2: u8 = 0x05;
const MISTAT: u8 = 0x0A;
const EREVID: u8 = 0x12;

// Bits.
const ECON1_TXRST: u8 = 0x80;
const ECON1_RXRST: u8 = 0x40;
const ECON1_TXRTS: u8 = 0x08;
const ECON1_RXEN: u8 = 0x04;
const ECON2_AUTOINC: u8 = 0x80;
const ECON2_PKTDEC: u8 = 0x40;
const ESTAT_INT: u8 = 0x80;
const ESTAT_TXABRT: u8 = 0x02;
const ESTAT_CLKRDY: u8 = 0x01;
const EIE_INTIE: u8 = 0x80;
const EIR_PKTIF: u8 = 0x40;
const EIR_TXIF: u8 = 0x08;
const EIR_TXERIF: u8 = 0x02;
const EIR_RXERIF: u8 = 0x01;
const ERXFCON_UCEN: u8 = 0x80;
const ERXFCON_ANDOR: u8 = 0x40;
const ERXFCON_CRCEN: u8 = 0x20;
const ERXFCON_MCEN: u8 = 0x02;
const ERXFCON_BCEN: u8 = 0x01;
const MACON1_MARXEN: u8 = 0x01;
const MACON3_HFRMEN: u8 = 0x04;
const MACON3_FULDPX: u8 = 0x01;
const MICMD_MIIRD: u8 = 0x01;
const MISTAT_BUSY: u8 = 0x01;

// PHY.
const PHCON1: u8 = 0x00;
const PHSTAT1: u8 = 0x01;
const PHID1: u8 = 0x02;
const PHID2: u8 = 0x03;
const PHCON2: u8 = 0x10;
const PHSTAT2: u8 = 0x11;
const PHLCON: u8 = 0x14;
const PHCON1_PRST: u16 = 0x8000;
const PHCON1_PDPXMD: u16 = 0x0100;
const PHSTAT2_LSTAT: u16 = 0x0400;

/// The fake's own bus error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeSpiError;

impl spi::Error for FakeSpiError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

fn violation(msg: &str) -> ! {
    panic!("protocol violation: {msg}")
}

/// IEEE 802.3 CRC-32 (the Ethernet FCS).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A register: `None` bank for the common registers 1Bh..1Fh.
type RegId = (Option<u8>, u8);

#[derive(Debug)]
enum Cmd {
    Idle,
    Rcr { reg: RegId, clocked: u8, needed: u8 },
    Wcr { reg: RegId, done: bool },
    Bfs { reg: RegId, done: bool },
    Bfc { reg: RegId, done: bool },
    Rbm,
    Wbm,
    Src,
}

#[derive(Debug, Clone, Copy)]
enum WriteHow {
    Wcr(u8),
    Bfs(u8),
    Bfc(u8),
}

#[derive(Debug)]
struct TxJob {
    remaining: u32,
    stalled: bool,
    frame: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum MiiOp {
    Read(u8),
    Write(u8, u16),
}

/// Status of a frame offered to the chip by the "network".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// Written into the receive ring.
    Stored,
    /// Receiver disabled or held in reset.
    RxOff,
    /// Rejected by the receive filters (`ERXFCON`), including a bad CRC with `CRCEN`.
    Filtered,
    /// Longer than `MAMXFL`.
    TooLong,
    /// Not enough free space in the ring, or `EPKTCNT` saturated (`EIR.RXERIF` set).
    Overflow,
}

/// The chip.
pub struct Chip {
    pub mem: Vec<u8>,
    banked: [[u8; 0x1B]; 4],
    eie: u8,
    eir: u8,
    estat: u8,
    econ2: u8,
    econ1: u8,
    erxrdpt: u16,
    erxrdpt_latch: Option<u8>,
    erxwrpt: u16,
    epktcnt: u8,
    /// Start addresses of the packets in the ring not yet freed by `ERXRDPT`.
    rx_queue: VecDeque<u16>,
    phy: [u16; 0x20],
    mii_busy: u32,
    mii_op: Option<MiiOp>,
    link: bool,

    clkrdy: bool,
    /// Number of `ESTAT` reads after the reset delay before `CLKRDY` is set; `None`: never.
    pub clkrdy_after_polls: Option<u32>,
    clk_polls_left: Option<u32>,
    reset_delay_pending: bool,
    delay_since_reset_ns: u64,
    external_at_reset_ns: u64,
    /// Delay performed outside the bus (a `DelayNs` provider shared with the test).
    pub external_delay_ns: Rc<Cell<u64>>,

    /// `ECON1` reads a transmission takes before `TXRTS` clears.
    pub tx_busy_polls: u32,
    /// `MISTAT` reads an MII operation stays busy.
    pub mii_busy_polls: u32,
    tx_job: Option<TxJob>,
    /// The next transmission is aborted by the chip (`TXERIF`, `TXRTS` clears).
    pub abort_next_tx: bool,
    /// The next transmission aborts and leaves `TXRTS` stuck (the errata case).
    pub stall_next_tx: bool,
    tx_reset_needed: bool,
    /// Frames that went onto the wire, exactly as the driver wrote them (no padding/FCS).
    pub sent: Vec<Vec<u8>>,
    /// Control bytes seen with each sent frame.
    pub control_bytes: Vec<u8>,

    /// Reject every transaction with an error.
    pub fail_all: bool,
    /// Reject the next `n` transactions with an error.
    pub fail_next: u32,
    /// Reject the transaction with this sequence number (see `transactions`).
    pub fail_at: Option<u64>,

    pub revision: u8,

    // Statistics for the tests.
    pub transactions: u64,
    pub estat_polls: u32,
    pub econ1_polls: u64,
    pub mistat_busy_seen: u32,
    pub spi_delay_ns: u64,
    pub ring_wraps: u32,
    pub overflow_rejects: u32,
    pub system_resets: u32,
}

impl Default for Chip {
    fn default() -> Self {
        Self::new()
    }
}

impl Chip {
    /// A chip that has been powered up for a while (oscillator running, link up).
    pub fn new() -> Self {
        let mut chip = Chip {
            mem: vec![0xA5; MEM_SIZE],
            banked: [[0; 0x1B]; 4],
            eie: 0,
            eir: 0,
            estat: 0,
            econ2: 0,
            econ1: 0,
            erxrdpt: 0,
            erxrdpt_latch: None,
            erxwrpt: 0,
            epktcnt: 0,
            rx_queue: VecDeque::new(),
            phy: [0; 0x20],
            mii_busy: 0,
            mii_op: None,
            link: true,
            clkrdy: true,
            clkrdy_after_polls: Some(3),
            clk_polls_left: None,
            reset_delay_pending: false,
            delay_since_reset_ns: 0,
            external_at_reset_ns: 0,
            external_delay_ns: Rc::new(Cell::new(0)),
            tx_busy_polls: 3,
            mii_busy_polls: 3,
            tx_job: None,
            abort_next_tx: false,
            stall_next_tx: false,
            tx_reset_needed: false,
            sent: Vec::new(),
            control_bytes: Vec::new(),
            fail_all: false,
            fail_next: 0,
            fail_at: None,
            revision: 0x06,
            transactions: 0,
            estat_polls: 0,
            econ1_polls: 0,
            mistat_busy_seen: 0,
            spi_delay_ns: 0,
            ring_wraps: 0,
            overflow_rejects: 0,
            system_resets: 0,
        };
        chip.reset_registers();
        chip.clkrdy = true;
        chip
    }

    /// Power-on / system reset values (DS39662E table 3-3 and section 11).
    fn reset_registers(&mut self) {
        self.banked = [[0; 0x1B]; 4];
        self.eie = 0;
        self.eir = 0;
        self.estat = 0;
        self.econ2 = ECON2_AUTOINC;
        self.econ1 = 0;
        self.set16(0, ERDPTL, 0x05FA);
        self.set16(0, ERXSTL, 0x05FA);
        self.set16(0, ERXNDL, 0x1FFF);
        self.erxrdpt = 0x05FA;
        self.erxrdpt_latch = None;
        self.erxwrpt = 0;
        self.epktcnt = 0;
        self.rx_queue.clear();
        self.banked[1][ERXFCON as usize] = 0xA1;
        self.set16(2, MAMXFLL, 0x0600);
        self.reset_phy();
        self.mii_busy = 0;
        self.mii_op = None;
        self.tx_job = None;
        self.tx_reset_needed = false;
    }

    fn reset_phy(&mut self) {
        self.phy = [0; 0x20];
        self.phy[PHSTAT1 as usize] = 0x1800;
        self.phy[PHID1 as usize] = 0x0083;
        self.phy[PHID2 as usize] = 0x1400;
        self.phy[PHLCON as usize] = 0x3422;
    }

    // ----------------------------------------------------------------- accessors for tests

    /// Raw register content, without read side effects.
    pub fn reg(&self, bank: u8, addr: u8) -> u8 {
        self.banked[bank as usize][addr as usize]
    }

    /// Raw 16-bit register pair (low byte at `addr`).
    pub fn reg16(&self, bank: u8, addr: u8) -> u16 {
        u16::from_le_bytes([self.reg(bank, addr), self.reg(bank, addr + 1)])
    }

    pub fn econ1(&self) -> u8 {
        self.econ1
    }

    pub fn econ2(&self) -> u8 {
        self.econ2
    }

    pub fn eie(&self) -> u8 {
        self.eie
    }

    pub fn eir(&self) -> u8 {
        self.eir | if self.epktcnt > 0 { EIR_PKTIF } else { 0 }
    }

    pub fn epktcnt(&self) -> u8 {
        self.epktcnt
    }

    pub fn erxrdpt(&self) -> u16 {
        self.erxrdpt
    }

    pub fn erxwrpt(&self) -> u16 {
        self.erxwrpt
    }

    pub fn erxst(&self) -> u16 {
        self.reg16(0, ERXSTL)
    }

    pub fn erxnd(&self) -> u16 {
        self.reg16(0, ERXNDL)
    }

    pub fn etxst(&self) -> u16 {
        self.reg16(0, ETXSTL)
    }

    pub fn etxnd(&self) -> u16 {
        self.reg16(0, ETXNDL)
    }

    pub fn mamxfl(&self) -> u16 {
        self.reg16(2, MAMXFLL)
    }

    pub fn erxfcon(&self) -> u8 {
        self.reg(1, ERXFCON)
    }

    pub fn phy_reg(&self, addr: u8) -> u16 {
        self.phy_read_value(addr)
    }

    /// The MAC address from `MAADR1..MAADR6` in wire order.
    pub fn mac_address(&self) -> [u8; 6] {
        [MAADR1, MAADR2, MAADR3, MAADR4, MAADR5, MAADR6].map(|a| self.reg(3, a))
    }

    /// Whether the (active low) INT pin is asserted.
    pub fn int_asserted(&self) -> bool {
        self.eie & EIE_INTIE != 0 && self.eir() & self.eie & 0x7F != 0
    }

    pub fn set_link(&mut self, up: bool) {
        self.link = up;
    }

    pub fn tx_busy(&self) -> bool {
        self.econ1 & ECON1_TXRTS != 0
    }

    /// Let time pass: a running (not stalled) transmission completes.
    pub fn tick(&mut self) {
        if self.tx_job.as_ref().is_some_and(|job| !job.stalled) {
            self.complete_tx();
        }
    }

    /// Free bytes in the receive ring, per DS39662E equation 7-1 (section 7.2.4).
    pub fn rx_free_space(&self) -> u16 {
        let (wr, rd) = (self.erxwrpt, self.erxrdpt);
        let size = self.erxnd() - self.erxst();
        if wr > rd {
            size - (wr - rd)
        } else if wr == rd {
            size
        } else {
            rd - wr - 1
        }
    }

    /// Overwrite the next packet pointer of the oldest unread packet (ring corruption).
    pub fn corrupt_oldest_next_pointer(&mut self, value: u16) {
        let start = *self.rx_queue.front().expect("no packet in the ring");
        let [lo, hi] = value.to_le_bytes();
        self.mem[start as usize] = lo;
        let second = self.ring_next(start);
        self.mem[second as usize] = hi;
    }

    // ------------------------------------------------------------------------ helpers

    fn set16(&mut self, bank: u8, low_addr: u8, value: u16) {
        let [lo, hi] = value.to_le_bytes();
        self.banked[bank as usize][low_addr as usize] = lo;
        self.banked[bank as usize][low_addr as usize + 1] = hi;
    }

    fn ring_next(&self, addr: u16) -> u16 {
        if addr == self.erxnd() {
            self.erxst()
        } else {
            addr + 1
        }
    }

    fn in_ring(&self, addr: u16) -> bool {
        addr >= self.erxst() && addr <= self.erxnd()
    }

    fn ring_size(&self) -> u32 {
        u32::from(self.erxnd() - self.erxst()) + 1
    }

    /// Ring distance from `from` forward to `to`.
    fn ring_distance(&self, from: u16, to: u16) -> u32 {
        let size = self.ring_size();
        (u32::from(to) + size - u32::from(from)) % size
    }

    fn is_mac_mii(reg: RegId) -> bool {
        match reg {
            (Some(2), addr) => addr < 0x1B,
            (Some(3), addr) => addr <= MAADR2 || addr == MISTAT,
            _ => false,
        }
    }

    fn resolve(&self, arg: u8) -> RegId {
        if arg >= 0x1B {
            (None, arg)
        } else {
            (Some(self.econ1 & 0x03), arg)
        }
    }

    fn check_ready(&self, what: &str) {
        if !self.clkrdy {
            violation(&format!("{what} before ESTAT.CLKRDY is set (DS39662E section 2.2)"));
        }
    }

    fn check_reset_delay(&mut self) {
        if !self.reset_delay_pending {
            return;
        }
        let external = self.external_delay_ns.get() - self.external_at_reset_ns;
        if self.delay_since_reset_ns + external < 1_000_000 {
            violation("SPI access less than 1 ms after the System Reset Command (DS80349)");
        }
        self.reset_delay_pending = false;
        self.clk_polls_left = self.clkrdy_after_polls;
    }

    // ------------------------------------------------------------------- SPI decoding

    fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), FakeSpiError> {
        self.transactions += 1;
        if self.fail_all {
            return Err(FakeSpiError);
        }
        if self.fail_at == Some(self.transactions) {
            return Err(FakeSpiError);
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(FakeSpiError);
        }
        let mut cmd = Cmd::Idle;
        for op in ops.iter_mut() {
            match op {
                Operation::Read(buf) => {
                    for byte in buf.iter_mut() {
                        *byte = self.clock(&mut cmd, None);
                    }
                }
                Operation::Write(buf) => {
                    for &byte in buf.iter() {
                        self.clock(&mut cmd, Some(byte));
                    }
                }
                Operation::Transfer(read, write) => {
                    for i in 0..read.len().max(write.len()) {
                        let miso = self.clock(&mut cmd, write.get(i).copied());
                        if let Some(slot) = read.get_mut(i) {
                            *slot = miso;
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for byte in buf.iter_mut() {
                        *byte = self.clock(&mut cmd, Some(*byte));
                    }
                }
                Operation::DelayNs(ns) => {
                    self.delay_since_reset_ns += u64::from(*ns);
                    self.spi_delay_ns += u64::from(*ns);
                }
            }
        }
        match cmd {
            Cmd::Rcr { clocked, needed, reg } if clocked < needed => violation(&format!(
                "RCR of {reg:?} ended after {clocked} of {needed} bytes \
                 (MAC/MII registers shift out a dummy byte first)"
            )),
            Cmd::Wcr { done: false, .. }
            | Cmd::Bfs { done: false, .. }
            | Cmd::Bfc { done: false, .. } => violation("WCR/BFS/BFC without its data byte"),
            _ => {}
        }
        Ok(())
    }

    /// One byte on the bus: `mosi` is `None` when the host clocks a Read operation (the
    /// value it sends is undefined). Returns the MISO byte.
    fn clock(&mut self, cmd: &mut Cmd, mosi: Option<u8>) -> u8 {
        match cmd {
            Cmd::Idle => {
                let Some(op) = mosi else {
                    violation("opcode byte clocked by a Read operation (undefined MOSI)");
                };
                self.check_reset_delay();
                if op == 0xFF {
                    self.system_reset();
                    *cmd = Cmd::Src;
                    return 0;
                }
                let arg = op & 0x1F;
                *cmd = match op >> 5 {
                    0b000 => {
                        let reg = self.resolve(arg);
                        if reg != (None, ESTAT) {
                            self.check_ready("RCR");
                        }
                        let needed = if Self::is_mac_mii(reg) { 2 } else { 1 };
                        Cmd::Rcr { reg, clocked: 0, needed }
                    }
                    0b001 if arg == 0x1A => {
                        self.check_ready("RBM");
                        Cmd::Rbm
                    }
                    0b010 => {
                        self.check_ready("WCR");
                        Cmd::Wcr { reg: self.resolve(arg), done: false }
                    }
                    0b011 if arg == 0x1A => {
                        self.check_ready("WBM");
                        Cmd::Wbm
                    }
                    0b100 | 0b101 => {
                        self.check_ready("BFS/BFC");
                        let reg = self.resolve(arg);
                        if Self::is_mac_mii(reg) {
                            violation(&format!(
                                "BFS/BFC on MAC/MII register {reg:?} (section 4.2.5)"
                            ));
                        }
                        if op >> 5 == 0b100 {
                            Cmd::Bfs { reg, done: false }
                        } else {
                            Cmd::Bfc { reg, done: false }
                        }
                    }
                    _ => violation(&format!("invalid opcode {op:#04x}")),
                };
                0
            }
            Cmd::Rcr { reg, clocked, needed } => {
                *clocked += 1;
                if *clocked > *needed {
                    violation(&format!("RCR of {reg:?} clocked too many bytes"));
                }
                if *clocked == *needed {
                    let reg = *reg;
                    self.read_reg(reg)
                } else {
                    0x5A // dummy byte of MAC/MII reads
                }
            }
            Cmd::Wcr { reg, done } | Cmd::Bfs { reg, done } | Cmd::Bfc { reg, done } => {
                if *done {
                    violation("extra byte after WCR/BFS/BFC");
                }
                let Some(value) = mosi else {
                    violation("WCR/BFS/BFC data clocked by a Read operation");
                };
                *done = true;
                let reg = *reg;
                let how = match cmd {
                    Cmd::Wcr { .. } => WriteHow::Wcr(value),
                    Cmd::Bfs { .. } => WriteHow::Bfs(value),
                    _ => WriteHow::Bfc(value),
                };
                self.write_reg(reg, how);
                0
            }
            Cmd::Rbm => self.read_buffer_byte(),
            Cmd::Wbm => {
                let Some(value) = mosi else {
                    violation("WBM data clocked by a Read operation");
                };
                self.write_buffer_byte(value);
                0
            }
            Cmd::Src => violation("bytes after the System Reset Command"),
        }
    }

    fn system_reset(&mut self) {
        self.system_resets += 1;
        self.reset_registers();
        self.clkrdy = false;
        self.reset_delay_pending = true;
        self.delay_since_reset_ns = 0;
        self.external_at_reset_ns = self.external_delay_ns.get();
    }

    // ------------------------------------------------------------------ buffer memory

    fn read_buffer_byte(&mut self) -> u8 {
        let addr = self.reg16(0, ERDPTL) & MEM_LAST;
        if self.in_ring(addr) && self.econ1 & ECON1_RXEN != 0 {
            // Only unread packet data (from ERXRDPT + 1 up to ERXWRPT) may be read.
            let first = self.ring_next(self.erxrdpt);
            let unread = self.ring_distance(first, self.erxwrpt);
            if self.ring_distance(first, addr) >= unread {
                violation(&format!("RBM reads {addr:#06x}, free space of the receive ring"));
            }
        }
        let value = self.mem[addr as usize];
        if self.econ2 & ECON2_AUTOINC != 0 {
            // Section 3.2.1: wraps from ERXND to ERXST, and from 1FFFh to 0000h.
            let next = if addr == self.erxnd() {
                self.erxst()
            } else if addr == MEM_LAST {
                0
            } else {
                addr + 1
            };
            self.set16(0, ERDPTL, next);
        }
        value
    }

    fn write_buffer_byte(&mut self, value: u8) {
        let addr = self.reg16(0, EWRPTL) & MEM_LAST;
        if self.in_ring(addr) && self.econ1 & ECON1_RXEN != 0 {
            violation(&format!("WBM writes {addr:#06x} inside the enabled receive ring"));
        }
        if self.tx_job.is_some()
            && addr >= self.etxst()
            && u32::from(addr) <= u32::from(self.etxnd()) + 7
        {
            violation("WBM modifies the transmit buffer while TXRTS is set");
        }
        self.mem[addr as usize] = value;
        if self.econ2 & ECON2_AUTOINC != 0 {
            let next = if addr == MEM_LAST { 0 } else { addr + 1 };
            self.set16(0, EWRPTL, next);
        }
    }

    // ---------------------------------------------------------------------- registers

    fn read_reg(&mut self, reg: RegId) -> u8 {
        match reg {
            (None, EIE) => self.eie,
            (None, EIR) => self.eir(),
            (None, ESTAT) => {
                self.estat_polls += 1;
                if !self.clkrdy && !self.reset_delay_pending {
                    match self.clk_polls_left {
                        Some(0) => self.clkrdy = true,
                        Some(n) => self.clk_polls_left = Some(n - 1),
                        None => {}
                    }
                }
                let mut value = self.estat;
                if self.clkrdy {
                    value |= ESTAT_CLKRDY;
                }
                if self.int_asserted() {
                    value |= ESTAT_INT;
                }
                value
            }
            (None, ECON2) => self.econ2,
            (None, ECON1) => {
                self.econ1_polls += 1;
                if let Some(job) = self.tx_job.as_mut() {
                    if !job.stalled {
                        job.remaining = job.remaining.saturating_sub(1);
                        if job.remaining == 0 {
                            self.complete_tx();
                        }
                    }
                }
                self.econ1
            }
            (None, _) => 0,
            (Some(0), ERXRDPTL) => self.erxrdpt.to_le_bytes()[0],
            (Some(0), ERXRDPTH) => self.erxrdpt.to_le_bytes()[1],
            (Some(0), ERXWRPTL) => self.erxwrpt.to_le_bytes()[0],
            (Some(0), ERXWRPTH) => self.erxwrpt.to_le_bytes()[1],
            (Some(1), EPKTCNT) => self.epktcnt,
            (Some(2), MIRDL | MIRDH) => {
                if self.mii_busy > 0 {
                    violation("MIRD read while MISTAT.BUSY is set (section 3.3.1)");
                }
                self.reg(2, reg.1)
            }
            (Some(3), MISTAT) => {
                if self.mii_busy > 0 {
                    self.mii_busy -= 1;
                    if self.mii_busy == 0 {
                        self.complete_mii();
                        return 0;
                    }
                    self.mistat_busy_seen += 1;
                    return MISTAT_BUSY;
                }
                0
            }
            (Some(3), EREVID) => self.revision,
            (Some(bank), addr) => self.reg(bank, addr),
        }
    }

    fn write_reg(&mut self, reg: RegId, how: WriteHow) {
        let old = match reg {
            (None, EIE) => self.eie,
            (None, EIR) => self.eir,
            (None, ESTAT) => self.estat,
            (None, ECON2) => self.econ2,
            (None, ECON1) => self.econ1,
            (None, _) => 0,
            (Some(0), ERXRDPTL) => self.erxrdpt.to_le_bytes()[0],
            (Some(0), ERXRDPTH) => self.erxrdpt.to_le_bytes()[1],
            (Some(1), EPKTCNT) => self.epktcnt,
            (Some(bank), addr) => self.reg(bank, addr),
        };
        let new = match how {
            WriteHow::Wcr(v) => v,
            WriteHow::Bfs(m) => old | m,
            WriteHow::Bfc(m) => old & !m,
        };
        match reg {
            (None, EIE) => self.eie = new,
            (None, EIR) => self.eir = new & !EIR_PKTIF,
            (None, ESTAT) => self.estat = new & 0x52,
            (None, ECON2) => {
                if new & ECON2_PKTDEC != 0 {
                    if self.epktcnt == 0 {
                        violation("ECON2.PKTDEC with EPKTCNT = 0");
                    }
                    self.epktcnt -= 1;
                }
                self.econ2 = new & !ECON2_PKTDEC;
            }
            (None, ECON1) => self.write_econ1(old, new, how),
            (None, _) => {}
            (Some(0), ERXSTL | ERXSTH | ERXNDL | ERXNDH) => {
                if self.econ1 & ECON1_RXEN != 0 {
                    violation("ERXST/ERXND changed while ECON1.RXEN is set (section 6.1)");
                }
                self.banked[0][reg.1 as usize] = new;
                if matches!(reg.1, ERXSTL | ERXSTH) {
                    // Section 6.1: programming ERXST also loads ERXWRPT.
                    self.erxwrpt = self.erxst();
                    self.rx_queue.clear();
                }
            }
            (Some(0), ERXRDPTL) => self.erxrdpt_latch = Some(new),
            (Some(0), ERXRDPTH) => {
                let Some(low) = self.erxrdpt_latch.take() else {
                    violation("ERXRDPTH written without ERXRDPTL first");
                };
                self.commit_erxrdpt(u16::from_le_bytes([low, new]));
            }
            (Some(0), ERXWRPTL | ERXWRPTH) => violation("ERXWRPT is read only"),
            (Some(0), ETXSTL | ETXSTH | ETXNDL | ETXNDH) => {
                if self.econ1 & ECON1_TXRTS != 0 {
                    violation("ETXST/ETXND changed while ECON1.TXRTS is set");
                }
                self.banked[0][reg.1 as usize] = new;
            }
            (Some(0), ERDPTH | EWRPTH) => self.banked[0][reg.1 as usize] = new & 0x1F,
            (Some(1), EPKTCNT) => violation("EPKTCNT written directly (use ECON2.PKTDEC)"),
            (Some(2), MICMD | MIREGADR | MIWRL | MIWRH) => {
                if self.mii_busy > 0 {
                    violation("MII register written while MISTAT.BUSY is set");
                }
                if reg.1 == MICMD && new & MICMD_MIIRD != 0 {
                    if old & MICMD_MIIRD != 0 {
                        violation("MICMD.MIIRD set again without clearing it (section 3.3.1)");
                    }
                    self.start_mii(MiiOp::Read(self.reg(2, MIREGADR)));
                }
                self.banked[2][reg.1 as usize] = new;
                if reg.1 == MIWRH {
                    let value = self.reg16(2, MIWRL);
                    self.start_mii(MiiOp::Write(self.reg(2, MIREGADR), value));
                }
            }
            (Some(2), MIRDL | MIRDH) => violation("MIRD is read only"),
            (Some(3), MISTAT) => violation("MISTAT is read only"),
            (Some(3), EREVID) => violation("EREVID is read only"),
            (Some(bank), addr) => self.banked[bank as usize][addr as usize] = new,
        }
    }

    fn write_econ1(&mut self, old: u8, mut new: u8, how: WriteHow) {
        let asserts_txrts = match how {
            WriteHow::Wcr(v) | WriteHow::Bfs(v) => v & ECON1_TXRTS != 0,
            WriteHow::Bfc(_) => false,
        };
        if asserts_txrts && old & ECON1_TXRTS != 0 {
            violation("ECON1.TXRTS set while a transmission is still pending");
        }
        if new & ECON1_TXRST != 0 && old & ECON1_TXRST == 0 {
            // Transmit logic reset: any transmission is abandoned.
            self.tx_job = None;
            self.tx_reset_needed = false;
            new &= !ECON1_TXRTS;
        }
        if old & ECON1_TXRTS != 0 && new & ECON1_TXRTS == 0 && self.tx_job.take().is_some() {
            // Host cleared TXRTS: abort.
            self.estat |= ESTAT_TXABRT;
        }
        if new & ECON1_RXRST != 0 {
            new &= !ECON1_RXEN;
        }
        if new & ECON1_RXEN != 0 && old & ECON1_RXEN == 0 {
            self.check_rx_config();
        }
        self.econ1 = new;
        if asserts_txrts {
            if new & ECON1_TXRST != 0 {
                violation("TXRTS set while the transmit logic is held in reset");
            }
            self.start_tx();
        }
    }

    fn commit_erxrdpt(&mut self, value: u16) {
        if value.is_multiple_of(2) {
            violation(&format!("ERXRDPT set to the even address {value:#06x} (DS80349)"));
        }
        if !self.in_ring(value) {
            violation(&format!("ERXRDPT {value:#06x} outside the receive ring"));
        }
        // Everything before `boundary` is freed: it must be a packet start or the write
        // pointer (nothing left), never the middle of an unread packet.
        let boundary = self.ring_next(value);
        if let Some(pos) = self.rx_queue.iter().position(|&start| start == boundary) {
            self.rx_queue.drain(..pos);
        } else if boundary == self.erxwrpt {
            self.rx_queue.clear();
        } else {
            violation(&format!("ERXRDPT {value:#06x} is not just before a packet boundary"));
        }
        self.erxrdpt = value;
    }

    fn check_rx_config(&self) {
        if self.erxst() != 0 {
            violation("receive buffer does not start at 0000h (DS80349)");
        }
        if self.erxnd() <= self.erxst() || self.erxnd() > MEM_LAST {
            violation("bad ERXND");
        }
        let mac_full = self.reg(2, MACON3) & MACON3_FULDPX != 0;
        let phy_full = self.phy[PHCON1 as usize] & PHCON1_PDPXMD != 0;
        if mac_full != phy_full {
            violation("MACON3.FULDPX and PHCON1.PDPXMD disagree (section 6.6)");
        }
        if self.reg(2, MACON1) & MACON1_MARXEN == 0 {
            violation("RXEN set without MACON1.MARXEN");
        }
    }

    // ----------------------------------------------------------------------------- MII

    fn start_mii(&mut self, op: MiiOp) {
        self.mii_op = Some(op);
        self.mii_busy = self.mii_busy_polls.max(1);
    }

    fn complete_mii(&mut self) {
        match self.mii_op.take() {
            Some(MiiOp::Read(addr)) => {
                let value = self.phy_read_value(addr);
                self.set16(2, MIRDL, value);
            }
            Some(MiiOp::Write(addr, value)) => self.phy_write_value(addr, value),
            None => {}
        }
    }

    fn phy_read_value(&self, addr: u8) -> u16 {
        match addr {
            PHSTAT1 => self.phy[PHSTAT1 as usize] | if self.link { 0x0004 } else { 0 },
            PHSTAT2 => {
                let duplex = self.phy[PHCON1 as usize] & PHCON1_PDPXMD != 0;
                (if self.link { PHSTAT2_LSTAT } else { 0 }) | if duplex { 0x0200 } else { 0 }
            }
            _ => self.phy.get(addr as usize).copied().unwrap_or(0),
        }
    }

    fn phy_write_value(&mut self, addr: u8, value: u16) {
        match addr {
            PHCON1 if value & PHCON1_PRST != 0 => self.reset_phy(),
            PHSTAT1 | PHSTAT2 | PHID1 | PHID2 => {}
            PHLCON if value & 0x3000 != 0x3000 => {
                violation("PHLCON bits 13:12 must be written as 1")
            }
            _ => {
                if let Some(slot) = self.phy.get_mut(addr as usize) {
                    *slot = value;
                }
            }
        }
    }

    // ------------------------------------------------------------------------ transmit

    fn start_tx(&mut self) {
        let (st, nd) = (self.etxst(), self.etxnd());
        if nd < st {
            violation("ETXND before ETXST");
        }
        if u32::from(nd) + 7 > u32::from(MEM_LAST) {
            violation("the transmit status vector would run past the end of memory");
        }
        if st <= self.erxnd() && nd >= self.erxst() {
            violation("transmit buffer overlaps the receive ring");
        }
        if self.tx_reset_needed {
            violation("TXRTS set after TXERIF without a transmit logic reset (DS80349)");
        }
        let control = self.mem[st as usize];
        if control & 0xF0 != 0 {
            violation(&format!("per-packet control byte {control:#04x} uses reserved bits"));
        }
        let frame = self.mem[st as usize + 1..=nd as usize].to_vec();
        if frame.is_empty() {
            violation("empty frame");
        }
        if frame.len() + 4 > usize::from(self.mamxfl()) && self.reg(2, MACON3) & MACON3_HFRMEN == 0
        {
            self.abort_tx();
            return;
        }
        self.control_bytes.push(control);
        if self.stall_next_tx {
            self.stall_next_tx = false;
            self.eir |= EIR_TXERIF;
            self.estat |= ESTAT_TXABRT;
            self.tx_reset_needed = true;
            self.tx_job = Some(TxJob { remaining: u32::MAX, stalled: true, frame });
            return;
        }
        if self.abort_next_tx {
            self.abort_next_tx = false;
            self.abort_tx();
            return;
        }
        self.tx_job = Some(TxJob { remaining: self.tx_busy_polls, stalled: false, frame });
        if self.tx_busy_polls == 0 {
            self.complete_tx();
        }
    }

    fn abort_tx(&mut self) {
        self.eir |= EIR_TXERIF;
        self.estat |= ESTAT_TXABRT;
        self.econ1 &= !ECON1_TXRTS;
        self.tx_reset_needed = true;
        self.tx_job = None;
    }

    fn complete_tx(&mut self) {
        let Some(job) = self.tx_job.take() else { return };
        let nd = self.etxnd() as usize;
        let count = job.frame.len() as u16;
        let wire = (job.frame.len().max(60) + 4) as u16;
        let [c0, c1] = count.to_le_bytes();
        let [w0, w1] = wire.to_le_bytes();
        // Table 7-2: byte count, status (bit 23 = done), total bytes on the wire, flags.
        let tsv = [c0, c1, 0x80, 0x00, w0, w1, 0x00];
        self.mem[nd + 1..nd + 8].copy_from_slice(&tsv);
        self.sent.push(job.frame);
        self.eir |= EIR_TXIF;
        self.estat &= !ESTAT_TXABRT;
        self.econ1 &= !ECON1_TXRTS;
    }

    // ------------------------------------------------------------------------- receive

    /// A frame (without FCS) arrives from the network with a good CRC.
    pub fn inject(&mut self, frame: &[u8]) -> Inject {
        self.receive_frame(frame, true, false)
    }

    /// A frame with a bad CRC arrives (the chip drops it when `ERXFCON.CRCEN` is set).
    pub fn inject_bad_crc(&mut self, frame: &[u8]) -> Inject {
        self.receive_frame(frame, false, false)
    }

    /// A frame that passes the filters but is stored with `Received OK` clear (length
    /// check error, as with an 802.3 length field that does not match).
    pub fn inject_errored(&mut self, frame: &[u8]) -> Inject {
        self.receive_frame(frame, true, true)
    }

    fn passes_filters(&self, frame: &[u8], crc_ok: bool) -> bool {
        let fcon = self.erxfcon();
        if fcon == 0 {
            return true; // promiscuous
        }
        if fcon & ERXFCON_CRCEN != 0 && !crc_ok {
            return false;
        }
        let dst = &frame[..6];
        let unicast = dst == self.mac_address();
        let broadcast = dst == [0xFF; 6];
        let multicast = dst[0] & 1 != 0 && !broadcast;
        let mut matches = Vec::new();
        if fcon & ERXFCON_UCEN != 0 {
            matches.push(unicast);
        }
        if fcon & ERXFCON_BCEN != 0 {
            matches.push(broadcast);
        }
        if fcon & ERXFCON_MCEN != 0 {
            matches.push(multicast);
        }
        if matches.is_empty() {
            return crc_ok || fcon & ERXFCON_CRCEN == 0;
        }
        if fcon & ERXFCON_ANDOR != 0 {
            matches.iter().all(|&m| m)
        } else {
            matches.iter().any(|&m| m)
        }
    }

    fn receive_frame(&mut self, frame: &[u8], crc_ok: bool, length_error: bool) -> Inject {
        assert!(frame.len() >= 14, "test bug: frame shorter than an Ethernet header");
        if self.econ1 & ECON1_RXEN == 0 || self.econ1 & ECON1_RXRST != 0 {
            return Inject::RxOff;
        }
        let wire_len = frame.len() + 4;
        if wire_len > usize::from(self.mamxfl()) && self.reg(2, MACON3) & MACON3_HFRMEN == 0 {
            return Inject::TooLong;
        }
        if !self.passes_filters(frame, crc_ok) {
            return Inject::Filtered;
        }
        let needed = (6 + wire_len + 1) & !1;
        if self.epktcnt == 255 || needed > usize::from(self.rx_free_space()) {
            self.eir |= EIR_RXERIF;
            self.overflow_rejects += 1;
            return Inject::Overflow;
        }
        let mut fcs = crc32(frame);
        if !crc_ok {
            fcs ^= 0xDEAD_BEEF;
        }
        let start = self.erxwrpt;
        let next = {
            let mut pos = start;
            for _ in 0..needed {
                pos = self.ring_next(pos);
            }
            pos
        };
        let mut status16_23 = 0u8;
        if crc_ok && !length_error {
            status16_23 |= 0x80; // bit 23: received OK
        }
        if !crc_ok {
            status16_23 |= 0x10; // bit 20: CRC error
        }
        if length_error {
            status16_23 |= 0x20; // bit 21: length check error
        }
        let dst = &frame[..6];
        let mut status24_31 = 0u8;
        if dst == [0xFF; 6] {
            status24_31 |= 0x02; // bit 25: broadcast
        } else if dst[0] & 1 != 0 {
            status24_31 |= 0x01; // bit 24: multicast
        }
        let [n0, n1] = next.to_le_bytes();
        let [c0, c1] = (wire_len as u16).to_le_bytes();
        let mut bytes = vec![n0, n1, c0, c1, status16_23, status24_31];
        bytes.extend_from_slice(frame);
        bytes.extend_from_slice(&fcs.to_le_bytes());
        if bytes.len() % 2 == 1 {
            bytes.push(0xEE); // padding: packets start at even addresses
        }
        let mut pos = start;
        for byte in bytes {
            self.mem[pos as usize] = byte;
            let following = self.ring_next(pos);
            if following < pos {
                self.ring_wraps += 1;
            }
            pos = following;
        }
        debug_assert_eq!(pos, next);
        self.rx_queue.push_back(start);
        self.erxwrpt = next;
        self.epktcnt += 1;
        Inject::Stored
    }
}

/// The fake bus handed to the driver; the test keeps a second handle to the same chip.
#[derive(Clone)]
pub struct FakeSpi(Rc<RefCell<Chip>>);

impl FakeSpi {
    pub fn new(chip: Chip) -> Self {
        FakeSpi(Rc::new(RefCell::new(chip)))
    }

    pub fn chip(&self) -> Rc<RefCell<Chip>> {
        Rc::clone(&self.0)
    }
}

impl ErrorType for FakeSpi {
    type Error = FakeSpiError;
}

impl SpiDevice for FakeSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), FakeSpiError> {
        self.0.borrow_mut().transaction(operations)
    }
}

/// A bus on which every transaction fails.
pub struct BrokenSpi;

impl ErrorType for BrokenSpi {
    type Error = FakeSpiError;
}

impl SpiDevice for BrokenSpi {
    fn transaction(&mut self, _: &mut [Operation<'_, u8>]) -> Result<(), FakeSpiError> {
        Err(FakeSpiError)
    }
}

/// A bus with nothing attached and MISO pulled to the given level (0xFF: pulled up).
pub struct FloatingSpi(pub u8);

impl ErrorType for FloatingSpi {
    type Error = FakeSpiError;
}

impl SpiDevice for FloatingSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), FakeSpiError> {
        for op in operations {
            match op {
                Operation::Read(buf) | Operation::TransferInPlace(buf) => buf.fill(self.0),
                Operation::Transfer(read, _) => read.fill(self.0),
                Operation::Write(_) | Operation::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}

/// A delay provider that only counts, shared with a [`Chip`] through `external_delay_ns`.
pub struct CountingDelay(pub Rc<Cell<u64>>);

impl embedded_hal::delay::DelayNs for CountingDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.0.set(self.0.get() + u64::from(ns));
    }
}
