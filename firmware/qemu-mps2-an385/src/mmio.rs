//! Volatile access to the board's memory-mapped registers: the only
//! `unsafe` of the firmware besides semihosting, interrupt unmasking and the
//! stack measurement.

/// A 32-bit device register at a fixed address of the MPS2-AN385 memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(usize);

impl Reg {
    /// The register at `base + offset`. Only the peripheral bases of this
    /// board (constants in this crate) are ever used.
    pub const fn at(base: usize, offset: usize) -> Reg {
        Reg(base + offset)
    }

    /// Reads the register.
    #[inline]
    pub fn read(self) -> u32 {
        // SAFETY: `self.0` is the aligned address of a device register of
        // this board (see `Reg::at`); device registers have no Rust-visible
        // aliasing and a volatile read has no other effect on memory.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }

    /// Writes the register.
    #[inline]
    pub fn write(self, value: u32) {
        // SAFETY: as for `read`; the address is a device register, not
        // memory the program owns.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, value) }
    }
}
