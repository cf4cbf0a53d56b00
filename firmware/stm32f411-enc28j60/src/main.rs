//! A dht-core node on a real board: a WeAct "Black Pill" (STM32F411CEU6,
//! 100 MHz Cortex-M4F, 128 KiB RAM) with an ENC28J60 Ethernet module on
//! SPI1. See README.md for the wiring and how to flash it.
//!
//! Everything here is board glue: clocks, pins, a microsecond clock, the
//! interrupt that wakes the CPU when the ENC28J60 has frames. The node is
//! dht-core, the network stack dht-smoltcp, the Ethernet driver
//! enc28j60-phy, as on every other target.
//!
//! The network settings are constants below: set them for your LAN before
//! flashing. The green LED (PC13) lights once the node has joined.

#![no_std]
#![no_main]

use core::cell::Cell;

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use dht_core::store::{RamSlot, RamStore};
use dht_core::{Config, ConfigError, Instant, NodeId, PeerAddr, SmallNode};
use dht_smoltcp::{Buffers, Idle, SocketSlots, Stack, StackConfig, StackError};
use embedded_hal_bus::spi::ExclusiveDevice;
use enc28j60_phy::Enc28j60;
use smoltcp::iface::Interface;
use static_cell::{ConstStaticCell, StaticCell};
use stm32f4xx_hal::gpio::{Edge, ExtiPin, Input, Output, PushPull, PA1, PA4};
use stm32f4xx_hal::pac::{self, interrupt, Interrupt, SPI1, TIM2, TIM3};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config as ClockConfig;
use stm32f4xx_hal::spi::{Mode, Phase, Polarity, Spi};
use stm32f4xx_hal::timer::{CounterUs, DelayUs, SysEvent};

// ---- settings: edit for your network -----------------------------------
// The addresses below are from TEST-NET-1 (192.0.2.0/24, RFC 5737), which
// no real network uses: replace them.

/// This node's IPv4 address and prefix.
const ADDRESS: [u8; 4] = [192, 0, 2, 50];
const PREFIX_LEN: u8 = 24;
/// The router, if peers are on other subnets.
const GATEWAY: Option<[u8; 4]> = None;
/// The UDP port the node listens on.
const PORT: u16 = 9000;
/// A running node to join through (a `dhtnode` on a PC of the LAN).
const SEED: PeerAddr = PeerAddr::v4([192, 0, 2, 10], 8000);
/// Fragment slots (8 KB each): what the node stores for the network.
const SLOTS: usize = 2;
// --------------------------------------------------------------------------

type Spi1Device = ExclusiveDevice<Spi<SPI1>, PA4<Output<PushPull>>, DelayUs<TIM3>>;
type Ethernet = Enc28j60<Spi1Device>;
type Store = RamStore<&'static mut [RamSlot; SLOTS]>;
type BoardNode = SmallNode<Store>;
/// The socket payload buffers, at dht-smoltcp's defaults: every datagram
/// fits a frame, and frames wait in the ENC28J60's 6.5 KB receive ring
/// until the node has handled the one before.
type NetBuffers = Buffers;
/// Requests a peer may have in flight to this node (fragments it offers or
/// asks for): one being served and one waiting (as the QEMU firmware).
const RX_WINDOW: u8 = 2;

static NET_BUFFERS: ConstStaticCell<NetBuffers> = ConstStaticCell::new(NetBuffers::new());
// Built in place at run time (.bss), not copied from flash (.data).
static NET_SLOTS: StaticCell<SocketSlots<'static>> = StaticCell::new();
static FRAGMENTS: ConstStaticCell<[RamSlot; SLOTS]> = ConstStaticCell::new([RamSlot::EMPTY; SLOTS]);
static ETHERNET: StaticCell<Ethernet> = StaticCell::new();
static IFACE: StaticCell<Interface> = StaticCell::new();
static STACK: StaticCell<Result<Stack<'static>, StackError>> = StaticCell::new();
static NODE: StaticCell<Result<BoardNode, ConfigError>> = StaticCell::new();

/// Set by the ENC28J60's interrupt (INT on PA1, falling edge).
static FRAME_WAITING: Mutex<Cell<bool>> = Mutex::new(Cell::new(false));

#[entry]
fn main() -> ! {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        halt()
    };
    // 25 MHz crystal, 100 MHz system clock.
    let mut rcc = dp.RCC.freeze(ClockConfig::hse(25.MHz()).sysclk(100.MHz()));
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpioc = dp.GPIOC.split(&mut rcc);
    let mut led = gpioc.pc13.into_push_pull_output();
    led.set_high(); // off (the LED is active low)

    // SPI1 in mode 0 at 10 MHz (the ENC28J60 wants 8 to 20 MHz).
    let spi = Spi::new(
        dp.SPI1,
        (Some(gpioa.pa5), Some(gpioa.pa6), Some(gpioa.pa7)),
        Mode { polarity: Polarity::IdleLow, phase: Phase::CaptureOnFirstTransition },
        10.MHz(),
        &mut rcc,
    );
    let cs = gpioa.pa4.into_push_pull_output();
    let delay = dp.TIM3.delay_us(&mut rcc);
    let Ok(device) = ExclusiveDevice::new(spi, cs, delay);
    let mac = mac_address();
    let Ok(eth) = Enc28j60::new(device, mac) else { halt() };
    let eth = ETHERNET.init(eth);
    if eth.enable_interrupts().is_err() {
        halt()
    }

    // INT (active low while frames wait) wakes the CPU.
    let mut syscfg = dp.SYSCFG.constrain(&mut rcc);
    let mut exti = dp.EXTI;
    let mut int_pin: PA1<Input> = gpioa.pa1.into_pull_up_input();
    int_pin.make_interrupt_source(&mut syscfg);
    int_pin.trigger_on_edge(&mut exti, Edge::Falling);
    int_pin.enable_interrupt(&mut exti);

    // A 100 Hz SysTick also wakes it, for the node's timers.
    let mut tick = cp.SYST.counter_hz(&rcc.clocks);
    if tick.start(100.Hz()).is_err() {
        halt()
    }
    tick.listen(SysEvent::Update);

    let mut clock = Clock::new(dp.TIM2.counter_us(&mut rcc));
    let now = clock.now();
    let stack = init_stack(eth, mac, now);
    let node = init_node(mac, eth);
    {
        let mut tx = stack.tx(now, eth);
        node.join(now, SEED, &mut tx);
        tx.flush();
    }
    // SAFETY: the handler only records that a frame is waiting, in a
    // critical-section cell.
    unsafe { NVIC::unmask(Interrupt::EXTI1) };

    let mut app = Idle;
    loop {
        let now = clock.now();
        let next = stack.service(now, eth, node, &mut app);
        if node.is_joined() {
            led.set_low();
        }
        int_pin.clear_interrupt_pending_bit();
        cortex_m::interrupt::free(|cs| {
            let waiting = FRAME_WAITING.borrow(cs).replace(false) || int_pin.is_low();
            let due = next.is_some_and(|at| clock.now() >= at);
            if !waiting && !due {
                // Interrupts stay pending while masked: WFI returns at once
                // if one came in since the check.
                cortex_m::asm::wfi();
            }
        });
    }
}

#[inline(never)]
fn init_stack(eth: &mut Ethernet, mac: [u8; 6], now: Instant) -> &'static mut Stack<'static> {
    let config = StackConfig {
        mac,
        address: ADDRESS,
        prefix_len: PREFIX_LEN,
        gateway: GATEWAY,
        port: PORT,
        translation: None,
    };
    let iface = IFACE.init_with(|| dht_smoltcp::interface(mac, eth, now));
    let slots = NET_SLOTS.init_with(SocketSlots::new);
    match STACK.init_with(|| Stack::new(config, iface, NET_BUFFERS.take(), slots)) {
        Ok(stack) => stack,
        Err(_) => halt(),
    }
}

/// The node: a small member whose pieces fit one frame of `eth`.
#[inline(never)]
fn init_node(mac: [u8; 6], eth: &Ethernet) -> &'static mut BoardNode {
    let [a, b, c, d, e, f] = mac;
    let id = NodeId(u64::from_le_bytes([a, b, c, d, e, f, 0x5A, 0xA5]));
    let addr = PeerAddr::v4(ADDRESS, PORT);
    let store = RamStore::new(FRAGMENTS.take());
    let mut config = dht_smoltcp::link_config(Config::small(), eth);
    config.rx_window = RX_WINDOW;
    match NODE.init_with(|| SmallNode::new(config, id, addr, id.0, store)) {
        Ok(node) => node,
        Err(_) => halt(),
    }
}

/// A locally administered unicast Ethernet address from the chip's unique
/// ID, so that every board gets its own.
fn mac_address() -> [u8; 6] {
    let uid = stm32f4xx_hal::signature::Uid::get();
    let lot = uid.lot_num().as_bytes();
    let byte = |i: usize| lot.get(i).copied().unwrap_or(0);
    [0x02, uid.waf_num(), byte(4), byte(5), byte(6), (uid.x() as u8) ^ (uid.y() as u8)]
}

/// Microseconds since boot from TIM2's 32-bit counter, extended to 64 bits
/// (read at least every 71 minutes: the node's timers see to that).
struct Clock {
    counter: CounterUs<TIM2>,
    last: u32,
    high: u64,
}

impl Clock {
    fn new(mut counter: CounterUs<TIM2>) -> Self {
        if counter.start(u32::MAX.micros()).is_err() {
            halt()
        }
        Clock { counter, last: 0, high: 0 }
    }

    fn now(&mut self) -> Instant {
        let ticks = self.counter.now().ticks();
        if ticks < self.last {
            self.high += 1 << 32;
        }
        self.last = ticks;
        Instant::from_micros(self.high + u64::from(ticks))
    }
}

#[interrupt]
fn EXTI1() {
    cortex_m::interrupt::free(|cs| FRAME_WAITING.borrow(cs).set(true));
    // The main loop clears the pin's pending bit after reading the frames.
    NVIC::mask(Interrupt::EXTI1);
    NVIC::unpend(Interrupt::EXTI1);
    // SAFETY: re-enabled at once; the EXTI pending bit (cleared by the main
    // loop) keeps it from firing again until a new edge.
    unsafe { NVIC::unmask(Interrupt::EXTI1) };
}

#[exception]
fn SysTick() {}

/// Something the board cannot work without failed: stop here (a debugger
/// shows where).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    halt()
}
