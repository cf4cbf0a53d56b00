//! Time since boot from SysTick: a 100 Hz interrupt counts ticks, the
//! counter's current value gives the microseconds within a tick.

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
const MICROS_PER_TICK: u64 = 1_000_000 / TICK_HZ as u64;
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
    loop {
        let before = TICKS.load(Ordering::Acquire);
        let counter = SYST::get_current();
        if TICKS.load(Ordering::Acquire) == before {
            let within = u64::from(RELOAD.saturating_sub(counter) / CYCLES_PER_MICRO);
            return Instant::from_micros(u64::from(before) * MICROS_PER_TICK + within);
        }
    }
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Release);
}
