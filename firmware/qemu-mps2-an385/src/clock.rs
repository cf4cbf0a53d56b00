//! Time since boot from SysTick: a 100 Hz interrupt counts ticks, the
//! counter's current value gives the cycles within a tick.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use dht_core::Instant;

/// The MPS2's system clock, which clocks the Cortex-M3 and its SysTick.
const SYSCLK_HZ: u32 = 25_000_000;
/// SysTick interrupts per second: the CPU wakes this often even when idle.
const TICK_HZ: u32 = 100;
const RELOAD: u32 = SYSCLK_HZ / TICK_HZ - 1;
const CYCLES_PER_MICRO: u32 = SYSCLK_HZ / 1_000_000;

static TICKS: AtomicU32 = AtomicU32::new(0);

/// Starts the clock.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Time since [`start`].
pub fn now() -> Instant {
    Instant::from_micros(cycles() / u64::from(CYCLES_PER_MICRO))
}

/// Cycles of the 25 MHz system clock since [`start`]. Under QEMU's
/// `-icount shift=0` (every instruction takes 1 ns of virtual time) one
/// cycle is 40 instructions.
pub fn cycles() -> u64 {
    loop {
        let before = TICKS.load(Ordering::Acquire);
        let counter = SYST::get_current();
        if TICKS.load(Ordering::Acquire) == before {
            let within = u64::from(RELOAD.saturating_sub(counter));
            return u64::from(before) * u64::from(RELOAD + 1) + within;
        }
    }
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Release);
}
