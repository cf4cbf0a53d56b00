//! UART0 of the MPS2 (an ARM CMSDK APB UART at 0x4000_4000) as the log.
//!
//! QEMU connects it to its standard output (`-nographic`).

use core::fmt::{self, Write};

use crate::clock;
use crate::mmio::Reg;

const BASE: usize = 0x4000_4000;
const DATA: Reg = Reg::at(BASE, 0x00);
const STATE: Reg = Reg::at(BASE, 0x04);
const CTRL: Reg = Reg::at(BASE, 0x08);
const BAUDDIV: Reg = Reg::at(BASE, 0x10);
const STATE_TX_FULL: u32 = 1;
const CTRL_TX_ENABLE: u32 = 1;

/// Enables the transmitter at 115200 baud (25 MHz / 217).
pub fn init() {
    BAUDDIV.write(217);
    CTRL.write(CTRL_TX_ENABLE);
}

/// Writes bytes, waiting (a bounded time) for room in the transmit buffer.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        let mut spins = 0u32;
        while STATE.read() & STATE_TX_FULL != 0 && spins < 100_000 {
            spins += 1;
        }
        DATA.write(u32::from(b));
    }
}

/// `core::fmt` onto the UART.
pub struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// The `log` facade onto the UART: `[seconds] LEVEL message`.
pub struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let micros = clock::now().total_micros();
            let _ = writeln!(
                Uart,
                "[{:5}.{:03}] {:5} {}",
                micros / 1_000_000,
                micros / 1_000 % 1_000,
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The logger instance.
pub static LOGGER: Logger = Logger;
