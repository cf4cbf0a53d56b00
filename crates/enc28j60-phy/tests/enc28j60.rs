//! Host tests of the ENC28J60 driver against the register-level chip model in `model/`.

mod model;

use std::cell::RefCell;
use std::rc::Rc;

use enc28j60_phy::{Config, Duplex, Enc28j60, Error, Stats, MTU};
use model::{BrokenSpi, Chip, CountingDelay, FakeSpi, FakeSpiError, FloatingSpi, Inject};
use smoltcp::phy::{Device, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const PEER: [u8; 6] = [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE];

type Dev = Enc28j60<FakeSpi>;

fn setup_with(chip: Chip) -> (Dev, Rc<RefCell<Chip>>) {
    let spi = FakeSpi::new(chip);
    let handle = spi.chip();
    let dev = Enc28j60::new(spi, MAC).expect("init");
    (dev, handle)
}

fn setup() -> (Dev, Rc<RefCell<Chip>>) {
    setup_with(Chip::new())
}

/// An Ethernet II frame to `dst` of `len` bytes (header included) with a recognisable body.
fn frame(dst: [u8; 6], len: usize, seed: u32) -> Vec<u8> {
    assert!(len >= 14);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f.push(x as u8);
    }
    f
}

fn now() -> Instant {
    Instant::from_millis(0)
}

/// Receive one frame through the smoltcp API.
fn recv(dev: &mut Dev) -> Option<Vec<u8>> {
    let (rx, _tx) = dev.receive(now())?;
    Some(rx.consume(|bytes| bytes.to_vec()))
}

fn send(dev: &mut Dev, data: &[u8]) {
    let tx = dev.transmit(now()).expect("tx token");
    tx.consume(data.len(), |buf| buf.copy_from_slice(data));
}

/// Simple deterministic pseudo-random sizes.
fn sizes(count: usize, seed: u32) -> Vec<usize> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x % 4 {
                0 => 60,
                1 => 1514,
                _ => 60 + (x as usize / 7) % (1514 - 60 + 1),
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------ init

#[test]
fn init_programs_the_chip() {
    let (dev, chip) = setup();
    let c = chip.borrow();
    assert_eq!(dev.revision(), 0x06);
    assert_eq!(dev.mac_address(), MAC);
    assert_eq!(c.mac_address(), MAC);
    assert_eq!(c.mamxfl(), 1518);
    assert_eq!(c.erxst(), 0x0000);
    assert_eq!(c.erxnd(), 0x19FF);
    assert_eq!(c.erxrdpt(), 0x19FF);
    assert_eq!(c.erxrdpt() % 2, 1);
    assert_eq!(c.etxst(), 0x1A00);
    assert_eq!(c.erxfcon(), 0xA1, "unicast + CRC check + broadcast");
    assert_ne!(c.econ1() & 0x04, 0, "RXEN");
    assert_ne!(c.econ2() & 0x80, 0, "AUTOINC");
    // Half duplex by default, MAC and PHY agree.
    assert_eq!(c.reg(2, 0x02) & 0x01, 0, "MACON3.FULDPX");
    assert_eq!(c.phy_reg(0x00) & 0x0100, 0, "PHCON1.PDPXMD");
    assert_ne!(c.reg(2, 0x03) & 0x40, 0, "MACON4.DEFER");
    assert_eq!(c.reg(2, 0x04), 0x12, "MABBIPG half duplex");
    assert_eq!(c.reg(2, 0x06), 0x12, "MAIPGL");
    assert_eq!(c.reg(2, 0x07), 0x0C, "MAIPGH");
    assert_ne!(c.phy_reg(0x10) & 0x0100, 0, "PHCON2.HDLDIS");
    assert_eq!(c.phy_reg(0x14), 0x3476, "PHLCON");
    assert_eq!(c.system_resets, 1);
    assert!(c.spi_delay_ns >= 1_000_000, "1 ms after the soft reset");
    assert_eq!(c.estat_polls, 4, "CLKRDY came up on the 4th poll");
    assert!(c.mistat_busy_seen > 0, "MII busy was polled");
    assert_eq!(dev.stats(), Stats::default());
}

#[test]
fn init_full_duplex_is_consistent() {
    let spi = FakeSpi::new(Chip::new());
    let chip = spi.chip();
    let mut config = Config::default();
    config.duplex = Duplex::Full;
    config.accept_multicast = true;
    config.led_config = None;
    let _dev = Enc28j60::with_config(spi, MAC, config, None).expect("init");
    let c = chip.borrow();
    assert_ne!(c.reg(2, 0x02) & 0x01, 0, "MACON3.FULDPX");
    assert_ne!(c.phy_reg(0x00) & 0x0100, 0, "PHCON1.PDPXMD");
    assert_eq!(c.reg(2, 0x04), 0x15, "MABBIPG full duplex");
    assert_eq!(c.reg(2, 0x00) & 0x0D, 0x0D, "MACON1: MARXEN, TXPAUS, RXPAUS");
    assert_eq!(c.erxfcon(), 0xA3, "multicast accepted");
    assert_eq!(c.phy_reg(0x14), 0x3422, "LEDs untouched");
}

#[test]
fn init_with_external_delay_uses_no_spi_delay() {
    let chip = Chip::new();
    let counter = Rc::clone(&chip.external_delay_ns);
    let spi = FakeSpi::new(chip);
    let handle = spi.chip();
    let mut delay = CountingDelay(counter.clone());
    let dev = Enc28j60::with_config(spi, MAC, Config::default(), Some(&mut delay));
    assert!(dev.is_ok());
    assert_eq!(handle.borrow().spi_delay_ns, 0);
    assert!(counter.get() >= 1_000_000);
}

#[test]
fn reinit_restarts_cleanly() {
    let (mut dev, chip) = setup();
    let f = frame(MAC, 100, 1);
    assert_eq!(chip.borrow_mut().inject(&f), Inject::Stored);
    dev.reinit(None).expect("reinit");
    assert_eq!(chip.borrow().system_resets, 2);
    assert_eq!(chip.borrow().epktcnt(), 0);
    assert!(recv(&mut dev).is_none());
    assert_eq!(chip.borrow_mut().inject(&f), Inject::Stored);
    assert_eq!(recv(&mut dev).as_deref(), Some(&f[..]));
}

// ---------------------------------------------------------------------------- errors

#[test]
fn broken_bus_gives_spi_error() {
    match Enc28j60::new(BrokenSpi, MAC) {
        Err(Error::Spi(FakeSpiError)) => {}
        other => panic!("expected Error::Spi, got {other:?}"),
    }
}

#[test]
fn chip_without_clock_gives_not_ready_after_bounded_polls() {
    let mut chip = Chip::new();
    chip.clkrdy_after_polls = None;
    let spi = FakeSpi::new(chip);
    let handle = spi.chip();
    match Enc28j60::new(spi, MAC) {
        Err(Error::NotReady) => {}
        other => panic!("expected Error::NotReady, got {other:?}"),
    }
    let polls = handle.borrow().estat_polls;
    assert!((10..=10_000).contains(&polls), "{polls} polls");
}

#[test]
fn floating_bus_gives_no_chip() {
    match Enc28j60::new(FloatingSpi(0xFF), MAC) {
        Err(Error::NoChip) => {}
        other => panic!("expected Error::NoChip, got {other:?}"),
    }
    // MISO pulled low: CLKRDY never reads as set.
    match Enc28j60::new(FloatingSpi(0x00), MAC) {
        Err(Error::NotReady) => {}
        other => panic!("expected Error::NotReady, got {other:?}"),
    }
}

#[test]
fn revision_zero_is_no_chip() {
    let mut chip = Chip::new();
    chip.revision = 0;
    let spi = FakeSpi::new(chip);
    assert!(matches!(Enc28j60::new(spi, MAC), Err(Error::NoChip)));
}

#[test]
fn stuck_mii_gives_timeout() {
    let mut chip = Chip::new();
    chip.mii_busy_polls = 1_000_000;
    let spi = FakeSpi::new(chip);
    assert!(matches!(Enc28j60::new(spi, MAC), Err(Error::MiiTimeout)));
}

// ------------------------------------------------------------------------ small API

#[test]
fn link_status_follows_the_phy() {
    let (mut dev, chip) = setup();
    assert!(dev.link_up().unwrap());
    chip.borrow_mut().set_link(false);
    assert!(!dev.link_up().unwrap());
    chip.borrow_mut().set_link(true);
    assert!(dev.link_up().unwrap());
    assert_eq!(dev.read_phy(0x02).unwrap(), 0x0083, "PHID1");
}

#[test]
fn capabilities() {
    let (dev, _chip) = setup();
    let caps = dev.capabilities();
    assert_eq!(caps.max_transmission_unit, 1514);
    assert_eq!(caps.medium, Medium::Ethernet);
    assert_eq!(caps.max_burst_size, Some(4));
}

#[test]
fn pending_packets_and_interrupts() {
    let (mut dev, chip) = setup();
    dev.enable_interrupts().unwrap();
    assert_eq!(chip.borrow().eie() & 0xC0, 0xC0, "INTIE + PKTIE");
    assert!(!chip.borrow().int_asserted());
    for i in 0..3 {
        assert_eq!(chip.borrow_mut().inject(&frame(MAC, 200, i)), Inject::Stored);
    }
    assert!(chip.borrow().int_asserted());
    assert_eq!(dev.pending_packets().unwrap(), 3);
    while recv(&mut dev).is_some() {}
    assert_eq!(dev.pending_packets().unwrap(), 0);
    assert!(!chip.borrow().int_asserted(), "INT released once drained");
    dev.disable_interrupts().unwrap();
    assert_eq!(chip.borrow().eie() & 0xC0, 0);
}

#[test]
fn driver_size() {
    let size = std::mem::size_of::<Dev>();
    println!("size_of::<Enc28j60<FakeSpi>>() = {size}");
    assert!(size < 3200, "{size}");
}

// -------------------------------------------------------------------------- receive

#[test]
fn receives_minimum_and_maximum_frames() {
    let (mut dev, chip) = setup();
    assert!(dev.receive(now()).is_none(), "nothing pending");
    for (i, len) in [60usize, 1514, 61, 14 + 46].into_iter().enumerate() {
        let f = frame(MAC, len, i as u32);
        assert_eq!(chip.borrow_mut().inject(&f), Inject::Stored);
        let got = recv(&mut dev).expect("frame");
        assert_eq!(got.len(), len);
        assert_eq!(got, f);
    }
    let broadcast = frame([0xFF; 6], 342, 9);
    assert_eq!(chip.borrow_mut().inject(&broadcast), Inject::Stored);
    assert_eq!(recv(&mut dev), Some(broadcast));
    assert!(recv(&mut dev).is_none());
    assert_eq!(dev.stats().rx_frames, 5);
    assert_eq!(chip.borrow().epktcnt(), 0);
}

#[test]
fn chip_filters_foreign_unicast_and_oversize() {
    let (mut dev, chip) = setup();
    assert_eq!(chip.borrow_mut().inject(&frame(PEER, 100, 1)), Inject::Filtered);
    assert_eq!(chip.borrow_mut().inject(&frame(MAC, 1515, 1)), Inject::TooLong);
    assert!(recv(&mut dev).is_none());
}

#[test]
fn bad_crc_and_errored_frames_are_dropped() {
    let (mut dev, chip) = setup();
    let good1 = frame(MAC, 100, 1);
    let good2 = frame(MAC, 1514, 2);
    // With ERXFCON.CRCEN the chip itself discards bad-CRC frames.
    assert_eq!(chip.borrow_mut().inject_bad_crc(&frame(MAC, 100, 7)), Inject::Filtered);
    {
        let mut c = chip.borrow_mut();
        assert_eq!(c.inject(&good1), Inject::Stored);
        // Stored with "received OK" clear: the driver must drop it.
        assert_eq!(c.inject_errored(&frame(MAC, 300, 8)), Inject::Stored);
        assert_eq!(c.inject_errored(&frame(MAC, 1514, 9)), Inject::Stored);
        assert_eq!(c.inject(&good2), Inject::Stored);
    }
    assert_eq!(recv(&mut dev), Some(good1));
    assert_eq!(recv(&mut dev), Some(good2));
    assert!(recv(&mut dev).is_none());
    let stats = dev.stats();
    assert_eq!(stats.rx_frames, 2);
    assert_eq!(stats.rx_dropped, 2);
    assert_eq!(chip.borrow().epktcnt(), 0);
}

#[test]
fn ring_full_refuses_and_freed_space_is_reused() {
    let (mut dev, chip) = setup();
    let frames: Vec<_> = (0..6).map(|i| frame(MAC, 1514, i)).collect();
    // 6656-byte ring, 1524 bytes per full frame: four fit.
    for f in &frames[..4] {
        assert_eq!(chip.borrow_mut().inject(f), Inject::Stored);
    }
    assert_eq!(chip.borrow_mut().inject(&frames[4]), Inject::Overflow);
    assert_ne!(chip.borrow().eir() & 0x01, 0, "RXERIF");
    assert_eq!(recv(&mut dev).as_ref(), Some(&frames[0]));
    // The first frame's space is free again.
    assert_eq!(chip.borrow_mut().inject(&frames[4]), Inject::Stored);
    assert_eq!(chip.borrow_mut().inject(&frames[5]), Inject::Overflow);
    for f in &frames[1..5] {
        assert_eq!(recv(&mut dev).as_ref(), Some(f));
    }
    assert_eq!(chip.borrow().rx_free_space(), 0x19FE, "everything freed");
}

#[test]
fn many_back_to_back_frames_across_the_wrap() {
    let (mut dev, chip) = setup();
    let lens = sizes(400, 0xC0FFEE);
    let total: usize = lens.iter().sum();
    assert!(total > 20 * 6656, "inject far more than the ring holds");
    let mut expected = std::collections::VecDeque::new();
    let mut next = 0;
    let mut received = 0;
    while received < lens.len() {
        // The network delivers back to back until the ring is full...
        while next < lens.len() {
            let f = frame(MAC, lens[next], next as u32);
            let outcome = chip.borrow_mut().inject(&f);
            match outcome {
                Inject::Stored => {}
                Inject::Overflow => break,
                other => panic!("{other:?}"),
            }
            expected.push_back(f);
            next += 1;
        }
        // ...then the host drains a few (not necessarily all).
        for _ in 0..(1 + received % 3) {
            let Some(got) = recv(&mut dev) else { break };
            assert_eq!(Some(got), expected.pop_front(), "frame {received}");
            received += 1;
        }
    }
    assert!(recv(&mut dev).is_none());
    assert!(chip.borrow().ring_wraps > 15, "wrapped {} times", chip.borrow().ring_wraps);
    assert_eq!(dev.stats().rx_frames, 400);
    assert_eq!(dev.stats().rx_dropped, 0);
}

#[test]
fn fragmented_8300_byte_datagram() {
    // 8300 bytes of UDP payload + 8-byte UDP header in IPv4 fragments of 1480 data bytes:
    // five 1514-byte frames and one of 14 + 20 + 708.
    let (mut dev, chip) = setup();
    let mut lens = vec![1514; 5];
    lens.push(14 + 20 + (8308 - 5 * 1480));
    let frames: Vec<_> = lens.iter().enumerate().map(|(i, &l)| frame(MAC, l, i as u32)).collect();
    let mut got = Vec::new();
    let mut pending = frames.iter();
    let mut current = pending.next();
    while let Some(f) = current {
        let outcome = chip.borrow_mut().inject(f);
        match outcome {
            Inject::Stored => current = pending.next(),
            Inject::Overflow => got.push(recv(&mut dev).expect("drain")),
            other => panic!("{other:?}"),
        }
    }
    while let Some(f) = recv(&mut dev) {
        got.push(f);
    }
    assert_eq!(got, frames);
}

#[test]
fn dropped_rx_token_keeps_the_frame() {
    let (mut dev, chip) = setup();
    let f = frame(MAC, 500, 3);
    chip.borrow_mut().inject(&f);
    {
        let tokens = dev.receive(now());
        assert!(tokens.is_some());
    }
    assert_eq!(recv(&mut dev), Some(f));
}

#[test]
fn spi_error_inside_rx_token_is_recorded_and_frame_retried() {
    let (mut dev, chip) = setup();
    let f = frame(MAC, 700, 4);
    chip.borrow_mut().inject(&f);
    let (rx, _tx) = dev.receive(now()).expect("token");
    chip.borrow_mut().fail_next = 1;
    let got = rx.consume(|bytes| bytes.to_vec());
    assert!(got.is_empty(), "smoltcp ignores empty frames");
    assert_eq!(dev.stats().spi_errors, 1);
    assert_eq!(dev.take_last_error(), Some(Error::Spi(FakeSpiError)));
    assert_eq!(dev.take_last_error(), None);
    assert_eq!(recv(&mut dev), Some(f), "frame delivered on retry");
    assert!(recv(&mut dev).is_none());
}

#[test]
fn spi_error_in_receive_returns_none() {
    let (mut dev, chip) = setup();
    chip.borrow_mut().inject(&frame(MAC, 64, 5));
    chip.borrow_mut().fail_next = 1;
    assert!(dev.receive(now()).is_none());
    assert_eq!(dev.last_error(), Some(&Error::Spi(FakeSpiError)));
    assert!(recv(&mut dev).is_some());
}

#[test]
fn corrupted_ring_resets_the_receiver() {
    let (mut dev, chip) = setup();
    for i in 0..3 {
        chip.borrow_mut().inject(&frame(MAC, 300, i));
    }
    chip.borrow_mut().corrupt_oldest_next_pointer(0x1235); // odd: impossible
    assert!(dev.receive(now()).is_none());
    assert_eq!(dev.take_last_error(), Some(Error::RxCorrupt));
    let stats = dev.stats();
    assert_eq!(stats.rx_resets, 1);
    assert_eq!(stats.rx_dropped, 3);
    assert_eq!(chip.borrow().epktcnt(), 0);
    let f = frame(MAC, 1514, 42);
    assert_eq!(chip.borrow_mut().inject(&f), Inject::Stored);
    assert_eq!(recv(&mut dev), Some(f));
}

// ------------------------------------------------------------------------- transmit

#[test]
fn transmits_frames_byte_identical() {
    let (mut dev, chip) = setup();
    let lens = [14usize, 42, 59, 60, 61, 100, 512, 1000, 1513, 1514];
    let frames: Vec<_> = lens.iter().enumerate().map(|(i, &l)| frame(PEER, l, i as u32)).collect();
    for f in &frames {
        send(&mut dev, f);
    }
    chip.borrow_mut().tick();
    let c = chip.borrow();
    assert_eq!(c.sent, frames);
    assert!(c.control_bytes.iter().all(|&b| b == 0));
    assert!(c.econ1_polls > 0, "waited for TXRTS");
    assert_eq!(c.etxst(), 0x1A00);
    assert_eq!(c.etxnd(), 0x1A00 + 1514);
    drop(c);
    assert_eq!(dev.stats().tx_frames, lens.len() as u32);
}

#[test]
fn back_to_back_transmission_with_slow_wire() {
    let mut chip = Chip::new();
    chip.tx_busy_polls = 200;
    let (mut dev, chip) = setup_with(chip);
    let frames: Vec<_> = (0..20).map(|i| frame(PEER, 1514, i)).collect();
    for f in &frames {
        send(&mut dev, f);
    }
    chip.borrow_mut().tick();
    assert_eq!(chip.borrow().sent, frames);
}

#[test]
fn transmit_abort_applies_the_errata_reset() {
    let (mut dev, chip) = setup();
    chip.borrow_mut().abort_next_tx = true;
    let a = frame(PEER, 300, 1);
    let b = frame(PEER, 400, 2);
    send(&mut dev, &a);
    // The model panics if TXRTS is set again without a transmit logic reset.
    send(&mut dev, &b);
    chip.borrow_mut().tick();
    assert_eq!(chip.borrow().sent, vec![b]);
    assert_eq!(dev.stats().tx_errors, 1);
}

#[test]
fn stuck_transmitter_times_out_and_recovers() {
    let (mut dev, chip) = setup();
    chip.borrow_mut().stall_next_tx = true;
    let a = frame(PEER, 300, 1);
    let b = frame(PEER, 400, 2);
    send(&mut dev, &a);
    let polls_before = chip.borrow().econ1_polls;
    send(&mut dev, &b);
    let polls = chip.borrow().econ1_polls - polls_before;
    assert!((1_000..=100_000).contains(&polls), "{polls} polls");
    chip.borrow_mut().tick();
    assert_eq!(chip.borrow().sent, vec![b]);
    assert_eq!(dev.take_last_error(), Some(Error::TxTimeout));
    assert_eq!(dev.stats().tx_errors, 1);
}

#[test]
fn spi_error_in_tx_token_is_recorded() {
    let (mut dev, chip) = setup();
    let a = frame(PEER, 100, 1);
    chip.borrow_mut().fail_next = 1;
    send(&mut dev, &a);
    assert_eq!(dev.stats().tx_dropped, 1);
    assert_eq!(dev.take_last_error(), Some(Error::Spi(FakeSpiError)));
    send(&mut dev, &a);
    chip.borrow_mut().tick();
    assert_eq!(chip.borrow().sent, vec![a]);
}

#[test]
fn oversize_tx_request_is_refused() {
    let (mut dev, chip) = setup();
    let tx = dev.transmit(now()).unwrap();
    let seen = tx.consume(MTU + 1, |buf| buf.len());
    assert_eq!(seen, MTU);
    assert_eq!(dev.take_last_error(), Some(Error::FrameTooLarge));
    assert_eq!(dev.stats().tx_dropped, 1);
    assert!(chip.borrow().sent.is_empty());
}

#[test]
fn reply_from_inside_the_rx_closure() {
    // smoltcp consumes the TxToken inside the RxToken's closure.
    let (mut dev, chip) = setup();
    let request = frame(MAC, 98, 77);
    chip.borrow_mut().inject(&request);
    let (rx, tx) = dev.receive(now()).expect("tokens");
    rx.consume(|bytes| {
        tx.consume(bytes.len(), |out| {
            out.copy_from_slice(bytes);
            out[..6].copy_from_slice(&PEER);
        })
    });
    chip.borrow_mut().tick();
    let mut expected = request.clone();
    expected[..6].copy_from_slice(&PEER);
    assert_eq!(chip.borrow().sent, vec![expected]);
    assert_eq!(dev.stats().rx_frames, 1);
    assert_eq!(dev.stats().tx_frames, 1);
}

#[test]
fn interleaved_traffic_both_directions() {
    let mut chip = Chip::new();
    chip.tx_busy_polls = 7;
    let (mut dev, chip) = setup_with(chip);
    let mut sent = Vec::new();
    let mut expected_rx = std::collections::VecDeque::new();
    for (i, len) in sizes(120, 99).into_iter().enumerate() {
        let f = frame(MAC, len, i as u32);
        if chip.borrow_mut().inject(&f) == Inject::Stored {
            expected_rx.push_back(f);
        }
        if i % 2 == 0 {
            let out = frame(PEER, 1514 - len + 60, i as u32);
            send(&mut dev, &out);
            sent.push(out);
        }
        if i % 3 != 0 {
            while let Some(got) = recv(&mut dev) {
                assert_eq!(Some(got), expected_rx.pop_front());
            }
        }
    }
    while let Some(got) = recv(&mut dev) {
        assert_eq!(Some(got), expected_rx.pop_front());
    }
    assert!(expected_rx.is_empty());
    chip.borrow_mut().tick();
    assert_eq!(chip.borrow().sent, sent);
}

#[test]
fn release_returns_the_bus() {
    let (dev, chip) = setup();
    let spi = dev.release();
    assert!(Rc::ptr_eq(&spi.chip(), &chip));
}

// ------------------------------------------------- bus errors at every point

#[test]
fn rx_survives_a_bus_error_at_any_point() {
    for k in 1..=60 {
        let (mut dev, chip) = setup();
        let frames: Vec<_> = (0..3).map(|i| frame(MAC, 100 + 700 * i, i as u32)).collect();
        for f in &frames {
            assert_eq!(chip.borrow_mut().inject(f), Inject::Stored);
        }
        let start = chip.borrow().transactions;
        chip.borrow_mut().fail_at = Some(start + k);
        let mut got = Vec::new();
        for _ in 0..20 {
            match dev.receive(now()) {
                Some((rx, _tx)) => {
                    let f = rx.consume(|bytes| bytes.to_vec());
                    if !f.is_empty() {
                        got.push(f);
                    }
                }
                None if chip.borrow().epktcnt() == 0 => break,
                None => {}
            }
        }
        assert_eq!(got, frames, "bus error at transaction {k}: every frame exactly once");
        let pending_failure = chip.borrow_mut().fail_at.take();
        if pending_failure.is_some_and(|at| at > chip.borrow().transactions) {
            assert!(k > 20, "the sweep covers the whole receive path");
            break;
        }
        assert_eq!(dev.take_last_error(), Some(Error::Spi(FakeSpiError)));
        let later = frame(MAC, 1514, 99);
        assert_eq!(chip.borrow_mut().inject(&later), Inject::Stored);
        assert_eq!(recv(&mut dev), Some(later), "bus error at transaction {k}");
    }
}

#[test]
fn tx_survives_a_bus_error_at_any_point() {
    for k in 1..=60 {
        let (mut dev, chip) = setup();
        // Every other run, the chip aborts the first frame so the errata reset runs.
        let abort_first = k % 2 == 0;
        chip.borrow_mut().abort_next_tx = abort_first;
        let frames: Vec<_> =
            (0..4).map(|i| frame(PEER, [200, 1514, 60, 333][i], i as u32)).collect();
        send(&mut dev, &frames[0]);
        let start = chip.borrow().transactions;
        chip.borrow_mut().fail_at = Some(start + k);
        for f in &frames[1..] {
            send(&mut dev, f);
        }
        let pending_failure = chip.borrow_mut().fail_at.take();
        if pending_failure.is_some_and(|at| at > chip.borrow().transactions) {
            assert!(k > 20, "the sweep covers the whole transmit path");
            break;
        }
        assert_eq!(dev.take_last_error(), Some(Error::Spi(FakeSpiError)), "k = {k}");
        let stats = dev.stats();
        assert_eq!(stats.tx_dropped, 1, "k = {k}");
        // The frames that went out are in order, with only the aborted/dropped ones missing.
        chip.borrow_mut().tick();
        let sent = chip.borrow().sent.clone();
        let mut candidates = frames.iter();
        for f in &sent {
            assert!(candidates.any(|c| c == f), "k = {k}: frame out of order");
        }
        assert_eq!(sent.len() + 1 + usize::from(abort_first), frames.len(), "k = {k}");
        // And the transmitter still works.
        let last = frame(PEER, 777, 9);
        send(&mut dev, &last);
        chip.borrow_mut().tick();
        assert_eq!(chip.borrow().sent.last(), Some(&last), "k = {k}");
    }
}

// ------------------------------------------------------ the model catches misuse

mod model_checks {
    use super::*;
    use embedded_hal::spi::{Operation, SpiDevice};

    fn ready_chip() -> FakeSpi {
        let mut spi = FakeSpi::new(Chip::new());
        spi.write(&[0xFF]).unwrap(); // SRC
        spi.transaction(&mut [Operation::DelayNs(1_000_000)]).unwrap();
        for _ in 0..10 {
            let mut b = [0x1D, 0];
            spi.transfer_in_place(&mut b).unwrap();
            if b[1] & 1 != 0 {
                return spi;
            }
        }
        panic!("model never ready");
    }

    #[test]
    #[should_panic(expected = "less than 1 ms after the System Reset Command")]
    fn access_right_after_reset() {
        let mut spi = FakeSpi::new(Chip::new());
        spi.write(&[0xFF]).unwrap();
        let mut b = [0x1D, 0];
        spi.transfer_in_place(&mut b).unwrap();
    }

    #[test]
    #[should_panic(expected = "before ESTAT.CLKRDY")]
    fn read_before_clkrdy() {
        let mut chip = Chip::new();
        chip.clkrdy_after_polls = Some(5);
        let mut spi = FakeSpi::new(chip);
        spi.write(&[0xFF]).unwrap();
        spi.transaction(&mut [Operation::DelayNs(2_000_000)]).unwrap();
        let mut b = [0x12, 0]; // EREVID in bank 0 address space: any non-ESTAT register
        spi.transfer_in_place(&mut b).unwrap();
    }

    #[test]
    #[should_panic(expected = "even address")]
    fn even_erxrdpt() {
        let mut spi = ready_chip();
        spi.write(&[0x40 | 0x0C, 0x00]).unwrap();
        spi.write(&[0x40 | 0x0D, 0x10]).unwrap();
    }

    #[test]
    #[should_panic(expected = "TXRTS set while a transmission is still pending")]
    fn txrts_twice() {
        let mut chip = Chip::new();
        chip.tx_busy_polls = 100;
        let spi = FakeSpi::new(chip);
        let mut dev = Enc28j60::new(spi, MAC).unwrap();
        send(&mut dev, &frame(PEER, 60, 1));
        let mut spi = dev.release();
        spi.write(&[0x80 | 0x1F, 0x08]).unwrap(); // BFS ECON1.TXRTS
    }

    #[test]
    #[should_panic(expected = "dummy byte")]
    fn mac_register_read_without_dummy() {
        let mut spi = ready_chip();
        spi.write(&[0x80 | 0x1F, 0x02]).unwrap(); // bank 2
        let mut b = [0x02, 0]; // RCR MACON3 with one data byte only
        spi.transfer_in_place(&mut b).unwrap();
    }

    #[test]
    #[should_panic(expected = "BFS/BFC on MAC/MII register")]
    fn bit_set_on_mac_register() {
        let mut spi = ready_chip();
        spi.write(&[0x80 | 0x1F, 0x02]).unwrap();
        spi.write(&[0x80 | 0x02, 0x01]).unwrap();
    }

    #[test]
    #[should_panic(expected = "PKTDEC with EPKTCNT = 0")]
    fn pktdec_without_packet() {
        let mut spi = ready_chip();
        spi.write(&[0x80 | 0x1E, 0x40]).unwrap();
    }

    #[test]
    #[should_panic(expected = "free space of the receive ring")]
    fn reading_freed_ring_space() {
        let (dev, _chip) = setup();
        let mut spi = dev.release();
        spi.write(&[0xA0 | 0x1F, 0x03]).unwrap(); // bank 0
        spi.write(&[0x40, 0x00]).unwrap(); // ERDPT = 0
        spi.write(&[0x41, 0x00]).unwrap();
        let mut b = [0u8; 4];
        spi.transaction(&mut [Operation::Write(&[0x3A]), Operation::Read(&mut b)]).unwrap();
    }
}
