//! A dht-core node on QEMU's MPS2-AN385 board: a Cortex-M3 with 128 KiB of
//! RAM budgeted, a LAN9118 Ethernet controller, and nothing else.
//!
//! It joins the overlay through a seed node, stores its shard's share of
//! the fragments in four RAM slots, serves them, and can upload a file
//! from its own flash image. It logs on UART0 (QEMU's standard output):
//! a status line every few seconds (see `status`) and one line per notable
//! event (`joined`, `stored <hash>`, `uploaded <index hash>`), which the
//! firmware test reads. Settings come from the semihosting command line
//! (see `config`), the network key among them.
//!
//! Every datagram fits one Ethernet frame (the node's largest datagram is
//! the frame's UDP payload), so the network stack keeps no IP reassembly
//! or fragmentation buffer, and frames wait in the LAN9118's receive FIFO
//! until the node has handled the one before.
//!
//! Between frames and timers the CPU sleeps (WFI); the LAN9118's receive
//! interrupt and a 100 Hz SysTick wake it.

#![no_std]
#![no_main]

mod clock;
mod config;
mod lan9118;
mod mmio;
mod semihosting;
mod uart;

use core::fmt::Write;
use core::panic::PanicInfo;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use dht_core::auth::NetworkKey;
use dht_core::counters::DropReason;
use dht_core::node::{Event, Reply, Transmit};
use dht_core::store::{FragmentStore, RamSlot, RamStore, Uncounted};
use dht_core::upload::{Upload, UploadEvent};
use dht_core::{Config, ConfigError, Duration, IndexName, Instant, SmallNode};
use dht_smoltcp::{App, Buffers, SocketSlots, Stack, StackConfig, StackError};
use smoltcp::iface::Interface;
use static_cell::{ConstStaticCell, StaticCell};

use crate::config::Settings;
use crate::lan9118::Lan9118;
use crate::uart::Uart;

/// The file the node uploads from its flash image.
const FILE: &[u8] = include_bytes!("../hello-from-mps2.txt");
const FILE_NAME: &str = "hello-from-mps2.txt";

/// Fragment slots: the node stores at most this many fragments.
const SLOTS: usize = 4;

// No copy counts on this node: its flash has no room for them (it keeps R
// copies; the host members keep the counts of index fragments).
type Store = Uncounted<RamStore<&'static mut [RamSlot; SLOTS]>>;
type FwNode = SmallNode<Store>;
/// An upload of a file of one fragment (and its index), two requests in
/// flight.
type FwUpload = Upload<&'static [u8], 2, 1, 1>;
/// The socket payload buffers: two frames' datagrams received (frames
/// wait in the NIC until the node has handled the one before), two and
/// 2 KB of small ones queued to send (see `dht_smoltcp::TX_PAYLOAD`).
type NetBuffers = Buffers;
/// Requests a peer may have in flight to this node (fragments it offers
/// or asks for), advertised in every datagram: one being served and one
/// waiting, which hides a request's round trip; more would only queue
/// behind the one fetch of an offer at a time (`Config::small`) and time
/// out at the sender. Pieces come only as answers to the node's own
/// FILEGETs, so this window is not what keeps the NIC from overflowing:
/// a whole fragment's answer (8 pieces of 1.1 KB, 9.5 KB of frames) fits
/// the LAN9118's 10.5 KB receive FIFO, which the stack drains frame by
/// frame as they come.
const RX_WINDOW: u8 = 2;

// Everything large lives in static memory, all zeros (.bss, no flash), so
// that neither construction nor use copies it through the stack.
static NET_BUFFERS: ConstStaticCell<NetBuffers> = ConstStaticCell::new(NetBuffers::new());
static NET_SLOTS: StaticCell<SocketSlots<'static>> = StaticCell::new();
static FRAGMENTS: ConstStaticCell<[RamSlot; SLOTS]> = ConstStaticCell::new([RamSlot::EMPTY; SLOTS]);
static ETHERNET: ConstStaticCell<Lan9118> = ConstStaticCell::new(Lan9118::new());
// Filled at run time, in place (uninitialised until then: .bss).
static UPLOAD: StaticCell<FwUpload> = StaticCell::new();
static NODE: StaticCell<Result<FwNode, ConfigError>> = StaticCell::new();
static IFACE: StaticCell<Interface> = StaticCell::new();
static STACK: StaticCell<Result<Stack<'static>, StackError>> = StaticCell::new();

#[entry]
fn main() -> ! {
    uart::init();
    let _ = log::set_logger(&uart::LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let Some(core) = cortex_m::Peripherals::take() else { fail("core peripherals taken twice") };
    clock::start(core.SYST);

    let mut line = [0u8; 512];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or("");
    let settings = match Settings::parse(cmdline) {
        Ok(s) => s,
        Err(bad) => {
            log::error!("bad setting '{}' (see src/config.rs for the keys)", bad.0);
            semihosting::exit(false)
        }
    };
    log::info!(
        "dht node {:#x} (shard {}) advertised at {}, guest port {}",
        settings.id.0,
        settings.id.shard().index(),
        settings.advertise,
        settings.port
    );
    memory_report();
    if settings.bench_hmac > 0 {
        bench_hmac(settings.bench_hmac);
    }

    let eth = ETHERNET.take();
    match eth.init(settings.mac) {
        Ok(id) => log::info!("LAN9118 id {id:#010x} up"),
        Err(e) => {
            log::error!("Ethernet controller: {e:?}");
            semihosting::exit(false)
        }
    }
    let now = clock::now();
    let stack = init_stack(&settings, eth, now);
    let node = init_node(&settings, eth);
    eth.enable_interrupts();
    // SAFETY: the interrupt handler (DefaultHandler) only acknowledges the
    // controller's interrupt and shares no data with the main loop.
    unsafe { cortex_m::peripheral::NVIC::unmask(EthernetIrq) };
    run(&settings, stack, eth, node)
}

/// The main loop. Out of line, so that its frame and the construction
/// temporaries of `init_stack` and `init_node` are never on the stack at the
/// same time.
#[inline(never)]
fn run(settings: &Settings, stack: &mut Stack<'static>, eth: &mut Lan9118, node: &mut FwNode) -> ! {
    let mut app = Firmware {
        upload: None,
        upload_after: settings.upload_after,
        upload_at: None,
        upload_done: false,
    };
    let start = clock::now();
    if let Some(seed) = settings.seed {
        let mut tx = stack.tx(start, eth);
        node.join(start, seed, &mut tx);
        tx.flush();
        log::info!("joining through {seed}");
    }
    let mut next_status = start;
    loop {
        let now = clock::now();
        let next = stack.service(now, eth, node, &mut app);
        if now >= next_status {
            status(node, stack, eth);
            next_status = now + settings.status_every;
        }
        if let Some(run) = settings.run_for {
            if now >= start + run {
                status(node, stack, eth);
                log::info!("ran {} s, exiting", run.total_millis() / 1000);
                semihosting::exit(true);
            }
        }
        let mut wake = next.map_or(next_status, |n| n.min(next_status));
        if let Some(run) = settings.run_for {
            wake = wake.min(start + run);
        }
        sleep_until(wake);
    }
}

/// Brings up the network stack in its static. Out of line so that the
/// temporaries of construction leave the stack before the main loop runs.
#[inline(never)]
fn init_stack(settings: &Settings, eth: &mut Lan9118, now: Instant) -> &'static mut Stack<'static> {
    let stack_config = StackConfig {
        mac: settings.mac,
        address: settings.ip,
        prefix_len: settings.prefix_len,
        gateway: settings.gateway,
        port: settings.port,
        translation: settings.translation,
    };
    let iface = IFACE.init_with(|| dht_smoltcp::interface(settings.mac, eth, now));
    match STACK.init_with(|| {
        Stack::new(stack_config, iface, NET_BUFFERS.take(), NET_SLOTS.init_with(SocketSlots::new))
    }) {
        Ok(stack) => stack,
        Err(e) => {
            log::error!("network stack: {e}");
            semihosting::exit(false)
        }
    }
}

/// Creates the node in its static (out of line, as `init_stack`): a small
/// member whose pieces fit one frame of `eth`, on the network of the key
/// in the settings, if any.
#[inline(never)]
fn init_node(settings: &Settings, eth: &Lan9118) -> &'static mut FwNode {
    let store = Uncounted(RamStore::new(FRAGMENTS.take()));
    let [a, b, c, d, e, f] = settings.mac;
    let seed = settings.id.0 ^ u64::from_le_bytes([a, b, c, d, e, f, 0, 0]);
    let mut config = dht_smoltcp::link_config(Config::small(), eth);
    config.rx_window = RX_WINDOW;
    let node =
        NODE.init_with(|| SmallNode::new(config, settings.id, settings.advertise, seed, store));
    match node {
        Ok(node) => {
            node.set_network_key(settings.key.clone());
            log::info!(
                "largest datagram {} B, {} network",
                node.config().max_datagram,
                if node.has_network_key() { "keyed" } else { "open" }
            );
            node
        }
        Err(e) => {
            log::error!("node settings: {e}");
            semihosting::exit(false)
        }
    }
}

/// Sleeps until `wake` or until a frame arrives.
fn sleep_until(wake: Instant) {
    while !Lan9118::rx_pending() && clock::now() < wake {
        // With interrupts masked, WFI still wakes on a pending interrupt,
        // which then runs once they are unmasked: a frame arriving between
        // the check and the WFI is not slept through.
        cortex_m::interrupt::free(|_| {
            if !Lan9118::rx_pending() {
                cortex_m::asm::wfi();
            }
        });
    }
}

/// The node's application: logs events and uploads the file in flash.
struct Firmware {
    upload: Option<&'static mut FwUpload>,
    upload_after: Option<Duration>,
    upload_at: Option<Instant>,
    upload_done: bool,
}

impl Firmware {
    fn drain_upload(&mut self) {
        let Some(upload) = self.upload.as_mut() else { return };
        while let Some(event) = upload.poll_event() {
            match event {
                UploadEvent::Stored { hash, holder, .. } => {
                    log::info!("upload: {hash} stored at {}", holder.addr)
                }
                UploadEvent::Searching { shard } => {
                    log::info!("upload: searching for a node of shard {shard}")
                }
                UploadEvent::Finished { index_hash } => {
                    log::info!("uploaded {FILE_NAME} ({} bytes) as {index_hash}", FILE.len());
                    self.upload_done = true;
                }
                UploadEvent::Failed(e) => {
                    log::warn!("upload failed: {e:?}");
                    self.upload_done = true;
                }
            }
        }
    }
}

impl App<Store, 40, 64, 4> for Firmware {
    fn poll_timeout(&self) -> Option<Instant> {
        match self.upload.as_ref() {
            Some(upload) if !self.upload_done => upload.poll_timeout(),
            Some(_) => None,
            None => self.upload_at,
        }
    }

    fn handle_timeout<T: Transmit>(&mut self, now: Instant, node: &mut FwNode, tx: &mut T) {
        if self.upload.is_none() && self.upload_at.is_some_and(|at| now >= at) {
            self.upload_at = None;
            match Upload::new(IndexName::from_file_name(FILE_NAME), FILE) {
                Ok(upload) => {
                    log::info!("uploading {FILE_NAME} ({} bytes)", FILE.len());
                    self.upload = UPLOAD.try_init(upload);
                }
                Err((e, _)) => log::warn!("cannot upload {FILE_NAME}: {e:?}"),
            }
            if let Some(upload) = self.upload.as_mut() {
                upload.start(now, node, tx);
            }
        } else if let Some(upload) = self.upload.as_mut() {
            upload.handle_timeout(now, node, tx);
        }
        self.drain_upload();
    }

    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut FwNode,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        if let Some(upload) = self.upload.as_mut() {
            upload.handle_reply(now, node, reply, tx);
        }
        self.drain_upload();
    }

    fn handle_event(&mut self, node: &FwNode, event: Event) {
        match event {
            Event::Joined { neighbors } => {
                log::info!("joined with {neighbors} neighbors");
                if let Some(after) = self.upload_after {
                    self.upload_at = Some(clock::now() + after);
                }
            }
            Event::FragmentStored(hash) => {
                log::info!("stored {hash} ({} of {} slots used)", node.store().len(), SLOTS)
            }
            Event::JoinRetry { attempt } => log::info!("join: no answer yet, attempt {attempt}"),
            Event::NeighborDead(peer) => log::info!("neighbor {} is dead", peer.addr),
            Event::CorruptFragmentRemoved(hash) => log::warn!("removed corrupt fragment {hash}"),
            Event::FetchAbandoned(hash) => log::info!("gave up fetching {hash}"),
            Event::StoreFull => log::warn!("store full: taking no more fragments"),
            Event::StoreAvailable { held } => log::info!("store has room again ({held} held)"),
            Event::IdentityChosen(_) | Event::Left { .. } => {}
        }
    }
}

/// One status line: what the test and a person watching want to know.
fn status(node: &FwNode, stack: &Stack<'_>, eth: &Lan9118) {
    let c = node.counters();
    let net = stack.stats();
    let dev = eth.stats();
    log::info!(
        "status joined={} neighbors={} held={}/{} stored={} served={} datagrams_in={} datagrams_out={} send_failed={} bad_tag={} frames_in={} frames_out={} frame_errors={} stack_high_water={}",
        node.is_joined() as u8,
        node.neighbors().len(),
        node.store().len(),
        SLOTS,
        c.fragments_stored,
        c.fragments_served,
        net.received,
        net.sent,
        net.send_failed,
        c.drops_of(DropReason::BadTag),
        dev.rx_frames,
        dev.tx_frames,
        dev.rx_errors,
        stack_high_water()
    );
}

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __sdata: u32;
    static __edata: u32;
}

/// Bytes between two linker symbols.
fn span(start: *const u32, end: *const u32) -> usize {
    (end as usize).saturating_sub(start as usize)
}

fn memory_report() {
    // Only the addresses of the linker's symbols are taken, never read.
    let (bss, data, stack) = {
        (
            span(core::ptr::addr_of!(__sbss), core::ptr::addr_of!(__ebss)),
            span(core::ptr::addr_of!(__sdata), core::ptr::addr_of!(__edata)),
            span(core::ptr::addr_of!(_stack_end), core::ptr::addr_of!(_stack_start)),
        )
    };
    log::info!("RAM: .data {data} B, .bss {bss} B, stack region {stack} B");
}

/// Times `rounds` network-key tags (HMAC-SHA256, what a keyed node
/// computes for every datagram it sends and checks on every one it
/// receives) over datagrams of 8192 bytes (a whole fragment, the largest
/// datagram), 1452 (a piece in one Ethernet frame) and 96 (a small control
/// message), and logs their cost in cycles of the 25 MHz system clock.
/// Under QEMU's `-icount shift=0` a cycle is 40 instructions; a last line
/// times a loop of known length (`asm::delay(n)` of cortex-m 0.7.10 runs
/// `subs` and `bne` n + 1 times) to check that scale.
#[inline(never)]
fn bench_hmac(rounds: u32) {
    let key = NetworkKey::new(b"bench");
    let datagram = [0x5Au8; dht_core::FRAGMENT_SIZE];
    for len in [dht_core::FRAGMENT_SIZE, 1452, 96] {
        let bytes = datagram.get(..len).unwrap_or(&[]);
        let start = clock::cycles();
        for _ in 0..rounds {
            core::hint::black_box(key.tag(core::hint::black_box(bytes)));
        }
        let cycles = clock::cycles() - start;
        log::info!("bench hmac bytes={len} rounds={rounds} cycles={cycles}");
    }
    const LOOPS: u32 = 1_000_000;
    let start = clock::cycles();
    cortex_m::asm::delay(LOOPS - 1);
    log::info!("bench loop instructions={} cycles={}", 2 * LOOPS, clock::cycles() - start);
}

/// The deepest the stack has been: cortex-m-rt paints the region between
/// `_stack_end` and `_stack_start` with 0xCCCCCCCC at reset (feature
/// `paint-stack`); the lowest word no longer painted marks the high water.
fn stack_high_water() -> usize {
    // SAFETY: the addresses are the linker's bounds of the stack region,
    // which is RAM this program owns; volatile reads of words in it do not
    // disturb the stack in use above the high-water mark.
    unsafe {
        let bottom = core::ptr::addr_of!(_stack_end) as usize;
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let mut at = bottom;
        while at < top && core::ptr::read_volatile(at as *const u32) == 0xCCCC_CCCC {
            at += 4;
        }
        top - at
    }
}

/// The LAN9118's line on the NVIC.
#[derive(Clone, Copy)]
struct EthernetIrq;

// SAFETY: 13 is the Ethernet interrupt of the MPS2-AN385.
unsafe impl cortex_m::interrupt::InterruptNumber for EthernetIrq {
    fn number(self) -> u16 {
        lan9118::IRQ
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == lan9118::IRQ as i16 {
        Lan9118::acknowledge_interrupt();
    } else {
        let _ = writeln!(Uart, "unexpected interrupt {irqn}");
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let _ = writeln!(Uart, "HARD FAULT at pc {:#010x}", frame.pc());
    semihosting::exit(false)
}

fn fail(what: &str) -> ! {
    log::error!("{what}");
    semihosting::exit(false)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if let Some(at) = info.location() {
        let _ = writeln!(Uart, "PANIC at {}:{}", at.file(), at.line());
    }
    semihosting::exit(false)
}
