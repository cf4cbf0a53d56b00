//! ENC28J60 register map, bit fields and SPI opcodes.
//!
//! Everything here is transcribed from the Microchip ENC28J60 data sheet, DS39662E:
//!
//! * section 3 "Memory Organization": the control registers (table 3-1 "ENC28J60 Control
//!   Register Map"), their split into four banks selected by `ECON1.BSEL1:BSEL0`
//!   (section 3.1), the 8 KiB Ethernet buffer (section 3.2) and the PHY registers reached
//!   indirectly through the MII registers (section 3.3, table 3-3);
//! * section 4 "Serial Peripheral Interface": the instruction set (table 4-1);
//! * section 7 "Transmitting and Receiving Packets": the per-packet control byte
//!   (table 7-1), the transmit status vector (table 7-2) and the receive status vector
//!   (table 7-3).
//!
//! Register kinds matter on the bus: the "ETH" registers answer an RCR with their value in
//! the byte following the opcode, while the MAC and MII registers (and `MISTAT`) first shift
//! out one dummy byte (section 4.2.1, figure 4-4). The bit-field commands BFS/BFC only work
//! on ETH registers (section 4.2.5).

/// One of the four register banks (DS39662E section 3.1, `ECON1.BSEL1:BSEL0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bank {
    /// Bank 0: buffer pointers and DMA.
    B0 = 0,
    /// Bank 1: hash table, pattern match, receive filters, packet count.
    B1 = 1,
    /// Bank 2: MAC and MII registers.
    B2 = 2,
    /// Bank 3: MAC address, self-test, `MISTAT`, `EREVID`, clock out, flow control.
    B3 = 3,
}

impl Bank {
    /// The value of `ECON1.BSEL1:BSEL0` that selects this bank.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// How a register answers the RCR command (DS39662E section 4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ETH register: the value follows the opcode directly; BFS/BFC allowed.
    Eth,
    /// MAC or MII register: one dummy byte precedes the value; BFS/BFC not allowed.
    MacMii,
}

/// A control register: its 5-bit address, its bank (`None` for the five registers
/// `EIE`..`ECON1` mapped into every bank at 0x1B..0x1F) and its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    /// Address inside the bank (0x00..=0x1F).
    pub addr: u8,
    /// Bank holding the register, `None` for the common registers.
    pub bank: Option<Bank>,
    /// ETH or MAC/MII register.
    pub kind: Kind,
}

const fn common(addr: u8) -> Reg {
    Reg { addr, bank: None, kind: Kind::Eth }
}

const fn eth(bank: Bank, addr: u8) -> Reg {
    Reg { addr, bank: Some(bank), kind: Kind::Eth }
}

const fn mac(bank: Bank, addr: u8) -> Reg {
    Reg { addr, bank: Some(bank), kind: Kind::MacMii }
}

// ---------------------------------------------------------------------------------------
// Common registers, present in all banks (table 3-1, addresses 1Bh..1Fh).
// ---------------------------------------------------------------------------------------

/// Ethernet interrupt enable register (section 12 "Interrupts").
pub const EIE: Reg = common(0x1B);
/// Ethernet interrupt request (flag) register (section 12 "Interrupts").
pub const EIR: Reg = common(0x1C);
/// Ethernet status register (`CLKRDY`: section 2.2; `TXABRT`: section 7.1).
pub const ESTAT: Reg = common(0x1D);
/// Ethernet control register 2 (section 3.1).
pub const ECON2: Reg = common(0x1E);
/// Ethernet control register 1 (section 3.1), holds the bank select bits.
pub const ECON1: Reg = common(0x1F);

// ---------------------------------------------------------------------------------------
// Bank 0: buffer pointers (section 3.2).
// ---------------------------------------------------------------------------------------

/// Buffer read pointer, low byte (section 3.2.1).
pub const ERDPTL: Reg = eth(Bank::B0, 0x00);
/// Buffer read pointer, high byte.
pub const ERDPTH: Reg = eth(Bank::B0, 0x01);
/// Buffer write pointer, low byte (section 3.2.2).
pub const EWRPTL: Reg = eth(Bank::B0, 0x02);
/// Buffer write pointer, high byte.
pub const EWRPTH: Reg = eth(Bank::B0, 0x03);
/// Transmit start pointer, low byte (section 7.1).
pub const ETXSTL: Reg = eth(Bank::B0, 0x04);
/// Transmit start pointer, high byte.
pub const ETXSTH: Reg = eth(Bank::B0, 0x05);
/// Transmit end pointer, low byte: address of the last byte of the frame.
pub const ETXNDL: Reg = eth(Bank::B0, 0x06);
/// Transmit end pointer, high byte.
pub const ETXNDH: Reg = eth(Bank::B0, 0x07);
/// Receive buffer start, low byte (section 6.1).
pub const ERXSTL: Reg = eth(Bank::B0, 0x08);
/// Receive buffer start, high byte.
pub const ERXSTH: Reg = eth(Bank::B0, 0x09);
/// Receive buffer end (inclusive), low byte.
pub const ERXNDL: Reg = eth(Bank::B0, 0x0A);
/// Receive buffer end (inclusive), high byte.
pub const ERXNDH: Reg = eth(Bank::B0, 0x0B);
/// Receive read pointer, low byte (section 7.2.4); latched until the high byte is written.
pub const ERXRDPTL: Reg = eth(Bank::B0, 0x0C);
/// Receive read pointer, high byte.
pub const ERXRDPTH: Reg = eth(Bank::B0, 0x0D);
/// Receive write pointer (hardware owned, read only), low byte.
pub const ERXWRPTL: Reg = eth(Bank::B0, 0x0E);
/// Receive write pointer (hardware owned, read only), high byte.
pub const ERXWRPTH: Reg = eth(Bank::B0, 0x0F);
/// DMA start, low byte (section 13).
pub const EDMASTL: Reg = eth(Bank::B0, 0x10);
/// DMA start, high byte.
pub const EDMASTH: Reg = eth(Bank::B0, 0x11);
/// DMA end, low byte.
pub const EDMANDL: Reg = eth(Bank::B0, 0x12);
/// DMA end, high byte.
pub const EDMANDH: Reg = eth(Bank::B0, 0x13);
/// DMA destination, low byte.
pub const EDMADSTL: Reg = eth(Bank::B0, 0x14);
/// DMA destination, high byte.
pub const EDMADSTH: Reg = eth(Bank::B0, 0x15);
/// DMA checksum, low byte.
pub const EDMACSL: Reg = eth(Bank::B0, 0x16);
/// DMA checksum, high byte.
pub const EDMACSH: Reg = eth(Bank::B0, 0x17);

// ---------------------------------------------------------------------------------------
// Bank 1: receive filters (section 8) and packet count.
// ---------------------------------------------------------------------------------------

/// Hash table byte 0 (EHT0..EHT7 occupy 00h..07h).
pub const EHT0: Reg = eth(Bank::B1, 0x00);
/// Pattern match mask byte 0 (EPMM0..EPMM7 occupy 08h..0Fh).
pub const EPMM0: Reg = eth(Bank::B1, 0x08);
/// Pattern match checksum, low byte.
pub const EPMCSL: Reg = eth(Bank::B1, 0x10);
/// Pattern match checksum, high byte.
pub const EPMCSH: Reg = eth(Bank::B1, 0x11);
/// Pattern match offset, low byte.
pub const EPMOL: Reg = eth(Bank::B1, 0x14);
/// Pattern match offset, high byte.
pub const EPMOH: Reg = eth(Bank::B1, 0x15);
/// Receive filter control (section 8 "Receive Filters").
pub const ERXFCON: Reg = eth(Bank::B1, 0x18);
/// Number of packets waiting in the receive buffer (section 7.2.4).
pub const EPKTCNT: Reg = eth(Bank::B1, 0x19);

// ---------------------------------------------------------------------------------------
// Bank 2: MAC and MII (section 6.5, section 3.3).
// ---------------------------------------------------------------------------------------

/// MAC control 1 (section 6.5 step 1).
pub const MACON1: Reg = mac(Bank::B2, 0x00);
/// MAC control 3 (section 6.5 step 2).
pub const MACON3: Reg = mac(Bank::B2, 0x02);
/// MAC control 4 (section 6.5 step 3).
pub const MACON4: Reg = mac(Bank::B2, 0x03);
/// Back-to-back inter-packet gap (section 6.5 step 5).
pub const MABBIPG: Reg = mac(Bank::B2, 0x04);
/// Non-back-to-back inter-packet gap, low byte (section 6.5 step 6).
pub const MAIPGL: Reg = mac(Bank::B2, 0x06);
/// Non-back-to-back inter-packet gap, high byte (half duplex only, step 7).
pub const MAIPGH: Reg = mac(Bank::B2, 0x07);
/// Retransmission maximum (half duplex, section 6.5 step 8).
pub const MACLCON1: Reg = mac(Bank::B2, 0x08);
/// Collision window (half duplex, section 6.5 step 8).
pub const MACLCON2: Reg = mac(Bank::B2, 0x09);
/// Maximum frame length, low byte (section 6.5 step 4).
pub const MAMXFLL: Reg = mac(Bank::B2, 0x0A);
/// Maximum frame length, high byte.
pub const MAMXFLH: Reg = mac(Bank::B2, 0x0B);
/// MII command (section 3.3).
pub const MICMD: Reg = mac(Bank::B2, 0x12);
/// MII (PHY) register address.
pub const MIREGADR: Reg = mac(Bank::B2, 0x14);
/// MII write data, low byte.
pub const MIWRL: Reg = mac(Bank::B2, 0x16);
/// MII write data, high byte; writing it starts the PHY write (section 3.3.2).
pub const MIWRH: Reg = mac(Bank::B2, 0x17);
/// MII read data, low byte (section 3.3.1).
pub const MIRDL: Reg = mac(Bank::B2, 0x18);
/// MII read data, high byte.
pub const MIRDH: Reg = mac(Bank::B2, 0x19);

// ---------------------------------------------------------------------------------------
// Bank 3: MAC address, MISTAT, revision.
// ---------------------------------------------------------------------------------------

/// MAC address byte 5 (`mac[4]`). Note the scrambled order of the MAADR registers.
pub const MAADR5: Reg = mac(Bank::B3, 0x00);
/// MAC address byte 6 (`mac[5]`, last byte on the wire).
pub const MAADR6: Reg = mac(Bank::B3, 0x01);
/// MAC address byte 3 (`mac[2]`).
pub const MAADR3: Reg = mac(Bank::B3, 0x02);
/// MAC address byte 4 (`mac[3]`).
pub const MAADR4: Reg = mac(Bank::B3, 0x03);
/// MAC address byte 1 (`mac[0]`, first byte on the wire).
pub const MAADR1: Reg = mac(Bank::B3, 0x04);
/// MAC address byte 2 (`mac[1]`).
pub const MAADR2: Reg = mac(Bank::B3, 0x05);
/// Built-in self-test fill seed.
pub const EBSTSD: Reg = eth(Bank::B3, 0x06);
/// Built-in self-test control.
pub const EBSTCON: Reg = eth(Bank::B3, 0x07);
/// MII status (section 3.3); answers RCR like a MAC/MII register.
pub const MISTAT: Reg = mac(Bank::B3, 0x0A);
/// Silicon revision (read only); B7 silicon reads 0x06.
pub const EREVID: Reg = eth(Bank::B3, 0x12);
/// Clock output control.
pub const ECOCON: Reg = eth(Bank::B3, 0x15);
/// Flow control.
pub const EFLOCON: Reg = eth(Bank::B3, 0x17);
/// Pause timer value, low byte.
pub const EPAUSL: Reg = eth(Bank::B3, 0x18);
/// Pause timer value, high byte.
pub const EPAUSH: Reg = eth(Bank::B3, 0x19);

/// The six MAC address registers in wire order: `MAADR_WIRE_ORDER[i]` holds `mac[i]`
/// (section 6.5 step 9).
pub const MAADR_WIRE_ORDER: [Reg; 6] = [MAADR1, MAADR2, MAADR3, MAADR4, MAADR5, MAADR6];

// ---------------------------------------------------------------------------------------
// Bit fields of the ETH registers.
// ---------------------------------------------------------------------------------------

/// `ECON1` bits (section 3.1).
pub mod econ1 {
    /// Transmit logic reset (section 11.3; also the TXERIF errata work-around).
    pub const TXRST: u8 = 1 << 7;
    /// Receive logic reset (section 11.4).
    pub const RXRST: u8 = 1 << 6;
    /// DMA start / busy.
    pub const DMAST: u8 = 1 << 5;
    /// DMA checksum mode.
    pub const CSUMEN: u8 = 1 << 4;
    /// Transmit request to send; cleared by hardware when the frame is done (section 7.1).
    pub const TXRTS: u8 = 1 << 3;
    /// Receive enable (section 7.2).
    pub const RXEN: u8 = 1 << 2;
    /// Bank select bit 1.
    pub const BSEL1: u8 = 1 << 1;
    /// Bank select bit 0.
    pub const BSEL0: u8 = 1 << 0;
    /// Both bank select bits.
    pub const BSEL_MASK: u8 = BSEL1 | BSEL0;
}

/// `ECON2` bits (section 3.1).
pub mod econ2 {
    /// Automatic buffer pointer increment for RBM/WBM (set after reset).
    pub const AUTOINC: u8 = 1 << 7;
    /// Decrement `EPKTCNT` (self clearing, section 7.2.4).
    pub const PKTDEC: u8 = 1 << 6;
    /// Power save.
    pub const PWRSV: u8 = 1 << 5;
    /// Voltage regulator power save.
    pub const VRPS: u8 = 1 << 3;
}

/// `ESTAT` bits.
pub mod estat {
    /// INT interrupt flag (mirror of the INT pin state).
    pub const INT: u8 = 1 << 7;
    /// Ethernet buffer error.
    pub const BUFER: u8 = 1 << 6;
    /// Late collision during the last transmission.
    pub const LATECOL: u8 = 1 << 4;
    /// Receive busy.
    pub const RXBUSY: u8 = 1 << 2;
    /// The last transmission was aborted.
    pub const TXABRT: u8 = 1 << 1;
    /// Clock ready: the oscillator start-up timer has expired (section 2.2).
    pub const CLKRDY: u8 = 1 << 0;
}

/// `EIE` bits (section 12).
pub mod eie {
    /// Global INT pin enable.
    pub const INTIE: u8 = 1 << 7;
    /// Receive packet pending interrupt enable.
    pub const PKTIE: u8 = 1 << 6;
    /// DMA interrupt enable.
    pub const DMAIE: u8 = 1 << 5;
    /// Link status change interrupt enable (also needs `PHIE`).
    pub const LINKIE: u8 = 1 << 4;
    /// Transmit done interrupt enable.
    pub const TXIE: u8 = 1 << 3;
    /// Transmit error interrupt enable.
    pub const TXERIE: u8 = 1 << 1;
    /// Receive error interrupt enable.
    pub const RXERIE: u8 = 1 << 0;
}

/// `EIR` bits (section 12).
pub mod eir {
    /// Receive packet pending (unreliable per errata; use `EPKTCNT`).
    pub const PKTIF: u8 = 1 << 6;
    /// DMA done.
    pub const DMAIF: u8 = 1 << 5;
    /// Link changed.
    pub const LINKIF: u8 = 1 << 4;
    /// Transmit done.
    pub const TXIF: u8 = 1 << 3;
    /// Transmit error (abort).
    pub const TXERIF: u8 = 1 << 1;
    /// Receive error (buffer full or `EPKTCNT` overflow).
    pub const RXERIF: u8 = 1 << 0;
}

/// `ERXFCON` bits (section 8).
pub mod erxfcon {
    /// Accept unicast frames to our MAC address.
    pub const UCEN: u8 = 1 << 7;
    /// AND instead of OR the enabled filters.
    pub const ANDOR: u8 = 1 << 6;
    /// Drop frames with a bad CRC.
    pub const CRCEN: u8 = 1 << 5;
    /// Pattern match filter.
    pub const PMEN: u8 = 1 << 4;
    /// Magic packet filter.
    pub const MPEN: u8 = 1 << 3;
    /// Hash table filter.
    pub const HTEN: u8 = 1 << 2;
    /// Accept multicast frames.
    pub const MCEN: u8 = 1 << 1;
    /// Accept broadcast frames.
    pub const BCEN: u8 = 1 << 0;
}

// ---------------------------------------------------------------------------------------
// Bit fields of the MAC/MII registers.
// ---------------------------------------------------------------------------------------

/// `MACON1` bits (section 6.5).
pub mod macon1 {
    /// Pause control frame transmission (full duplex only).
    pub const TXPAUS: u8 = 1 << 3;
    /// Pause control frame reception (full duplex only).
    pub const RXPAUS: u8 = 1 << 2;
    /// Pass all received control frames to the buffer.
    pub const PASSALL: u8 = 1 << 1;
    /// MAC receive enable.
    pub const MARXEN: u8 = 1 << 0;
}

/// `MACON3` bits (section 6.5).
pub mod macon3 {
    /// `PADCFG = 001`: pad short frames to 60 bytes and append a CRC.
    pub const PADCFG_60: u8 = 0b001 << 5;
    /// Append a CRC to every transmitted frame.
    pub const TXCRCEN: u8 = 1 << 4;
    /// Proprietary header enable.
    pub const PHDREN: u8 = 1 << 3;
    /// Huge frame enable (frames longer than `MAMXFL`).
    pub const HFRMEN: u8 = 1 << 2;
    /// Frame length checking (type/length field against actual length).
    pub const FRMLNEN: u8 = 1 << 1;
    /// MAC full duplex; must match `PHCON1.PDPXMD` (section 6.6).
    pub const FULDPX: u8 = 1 << 0;
}

/// `MACON4` bits (section 6.5).
pub mod macon4 {
    /// Defer transmission (IEEE 802.3 conformance in half duplex).
    pub const DEFER: u8 = 1 << 6;
    /// Back-pressure / no-backoff during back-pressure.
    pub const BPEN: u8 = 1 << 5;
    /// No backoff.
    pub const NOBKOFF: u8 = 1 << 4;
}

/// `MICMD` bits (section 3.3).
pub mod micmd {
    /// Continuous MII scan.
    pub const MIISCAN: u8 = 1 << 1;
    /// Start a single MII read.
    pub const MIIRD: u8 = 1 << 0;
}

/// `MISTAT` bits (section 3.3).
pub mod mistat {
    /// `MIRD` holds no valid data yet (scan mode).
    pub const NVALID: u8 = 1 << 2;
    /// Scan operation in progress.
    pub const SCAN: u8 = 1 << 1;
    /// An MII read or write is in progress.
    pub const BUSY: u8 = 1 << 0;
}

/// Recommended `MABBIPG` value for full duplex (section 6.5 step 5).
pub const MABBIPG_FULL_DUPLEX: u8 = 0x15;
/// Recommended `MABBIPG` value for half duplex (section 6.5 step 5).
pub const MABBIPG_HALF_DUPLEX: u8 = 0x12;
/// Recommended `MAIPGL` value (section 6.5 step 6).
pub const MAIPGL_DEFAULT: u8 = 0x12;
/// Recommended `MAIPGH` value for half duplex (section 6.5 step 7).
pub const MAIPGH_HALF_DUPLEX: u8 = 0x0C;

// ---------------------------------------------------------------------------------------
// PHY registers (section 3.3, table 3-3), 16 bit, reached through the MII registers.
// ---------------------------------------------------------------------------------------

/// PHY register addresses (written to `MIREGADR`).
pub mod phy {
    /// PHY control 1.
    pub const PHCON1: u8 = 0x00;
    /// Physical layer status 1.
    pub const PHSTAT1: u8 = 0x01;
    /// PHY identifier 1 (0x0083).
    pub const PHID1: u8 = 0x02;
    /// PHY identifier 2 (0x1400 | revision).
    pub const PHID2: u8 = 0x03;
    /// PHY control 2.
    pub const PHCON2: u8 = 0x10;
    /// Physical layer status 2.
    pub const PHSTAT2: u8 = 0x11;
    /// PHY interrupt enable.
    pub const PHIE: u8 = 0x12;
    /// PHY interrupt request.
    pub const PHIR: u8 = 0x13;
    /// PHY LED configuration (section 2.6 "LED Configuration").
    pub const PHLCON: u8 = 0x14;
}

/// `PHCON1` bits.
pub mod phcon1 {
    /// PHY software reset (self clearing).
    pub const PRST: u16 = 1 << 15;
    /// PHY loopback.
    pub const PLOOPBK: u16 = 1 << 14;
    /// PHY power down.
    pub const PPWRSV: u16 = 1 << 11;
    /// PHY full duplex; must match `MACON3.FULDPX` (section 6.6).
    pub const PDPXMD: u16 = 1 << 8;
}

/// `PHSTAT1` bits.
pub mod phstat1 {
    /// Full duplex capable.
    pub const PFDPX: u16 = 1 << 12;
    /// Half duplex capable.
    pub const PHDPX: u16 = 1 << 11;
    /// Latching link status (stays low after a link loss until read).
    pub const LLSTAT: u16 = 1 << 2;
    /// Latching jabber status.
    pub const JBSTAT: u16 = 1 << 1;
}

/// `PHSTAT2` bits.
pub mod phstat2 {
    /// PHY is transmitting.
    pub const TXSTAT: u16 = 1 << 13;
    /// PHY is receiving.
    pub const RXSTAT: u16 = 1 << 12;
    /// Collision in progress.
    pub const COLSTAT: u16 = 1 << 11;
    /// Link is up (non-latching).
    pub const LSTAT: u16 = 1 << 10;
    /// PHY is in full duplex.
    pub const DPXSTAT: u16 = 1 << 9;
    /// Receive polarity is reversed.
    pub const PLRITY: u16 = 1 << 5;
}

/// `PHCON2` bits.
pub mod phcon2 {
    /// Force link up.
    pub const FRCLNK: u16 = 1 << 14;
    /// Disable the twisted-pair transmitter.
    pub const TXDIS: u16 = 1 << 13;
    /// Disable jabber correction.
    pub const JABBER: u16 = 1 << 10;
    /// Half-duplex loopback disable: do not loop our own frames back in half duplex.
    pub const HDLDIS: u16 = 1 << 8;
}

/// `PHLCON` (LED configuration) helpers.
pub mod phlcon {
    /// Bits 13:12 are reserved and must be written as 1.
    pub const RESERVED: u16 = 0x3000;
    /// LED A shows link status, LED B shows transmit and receive activity, stretched
    /// pulses (`LACFG = 0100`, `LBCFG = 0111`, `LFRQ = 01`, `STRCH = 1`).
    pub const LINK_AND_ACTIVITY: u16 = RESERVED | (0x4 << 8) | (0x7 << 4) | (0b01 << 2) | (1 << 1);
}

// ---------------------------------------------------------------------------------------
// SPI instruction set (section 4.2, table 4-1).
// ---------------------------------------------------------------------------------------

/// SPI opcodes. The top three bits are the opcode, the low five bits the argument
/// (register address, or the fixed constant 11010b / 11111b).
pub mod opcode {
    /// Read Control Register: `000a_aaaa`, then one (ETH) or two (MAC/MII) bytes out.
    pub const RCR: u8 = 0x00;
    /// Read Buffer Memory: `0011_1010`, then data from `ERDPT` (auto-incrementing).
    pub const RBM: u8 = 0x3A;
    /// Write Control Register: `010a_aaaa`, then the value.
    pub const WCR: u8 = 0x40;
    /// Write Buffer Memory: `0111_1010`, then data to `EWRPT` (auto-incrementing).
    pub const WBM: u8 = 0x7A;
    /// Bit Field Set (ETH registers only): `100a_aaaa`, then the mask.
    pub const BFS: u8 = 0x80;
    /// Bit Field Clear (ETH registers only): `101a_aaaa`, then the mask.
    pub const BFC: u8 = 0xA0;
    /// System Reset Command (soft reset, section 11.2): `1111_1111`, nothing follows.
    pub const SRC: u8 = 0xFF;
    /// Mask of the 5-bit argument.
    pub const ARG_MASK: u8 = 0x1F;
}

// ---------------------------------------------------------------------------------------
// Per-packet structures in the buffer memory (section 7).
// ---------------------------------------------------------------------------------------

/// Per-packet control byte written before each frame (table 7-1). Zero means "use the
/// `MACON3` settings" (padding, CRC).
pub mod control {
    /// Allow a huge frame.
    pub const PHUGEEN: u8 = 1 << 3;
    /// Pad this frame.
    pub const PPADEN: u8 = 1 << 2;
    /// Append a CRC to this frame.
    pub const PCRCEN: u8 = 1 << 1;
    /// Use bits 3:1 instead of `MACON3`.
    pub const POVERRIDE: u8 = 1 << 0;
    /// Control byte that defers to `MACON3`.
    pub const USE_MACON3: u8 = 0x00;
}

/// Receive status vector (table 7-3): the six bytes in front of every received frame are
/// the next packet pointer (2 bytes, little endian) and this 32-bit vector, whose low 16
/// bits are the received byte count (destination address through CRC).
pub mod rsv {
    /// Length of the header in front of each received frame: next packet pointer + RSV.
    pub const HEADER_LEN: usize = 6;
    /// Bit 16: long event / drop event.
    pub const LONG_DROP_EVENT: u32 = 1 << 16;
    /// Bit 20: CRC error.
    pub const CRC_ERROR: u32 = 1 << 20;
    /// Bit 21: length check error.
    pub const LENGTH_CHECK_ERROR: u32 = 1 << 21;
    /// Bit 22: length out of range.
    pub const LENGTH_OUT_OF_RANGE: u32 = 1 << 22;
    /// Bit 23: received OK (valid CRC, no symbol errors).
    pub const RECEIVED_OK: u32 = 1 << 23;
    /// Bit 24: multicast.
    pub const MULTICAST: u32 = 1 << 24;
    /// Bit 25: broadcast.
    pub const BROADCAST: u32 = 1 << 25;
}

/// Transmit status vector (table 7-2), seven bytes written right after `ETXND`.
pub mod tsv {
    /// Length of the transmit status vector.
    pub const LEN: usize = 7;
    /// Bit 23: transmit done.
    pub const DONE: u64 = 1 << 23;
    /// Bit 29: late collision.
    pub const LATE_COLLISION: u64 = 1 << 29;
}
