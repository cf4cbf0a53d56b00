//! The host's side of the emulator: the command line (QEMU's
//! `-semihosting-config ...,arg=...`) and the exit status.

use cortex_m_semihosting::{debug, nr};

/// The command line QEMU passes, read into `buf`.
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE writes at most `block[1]` bytes into the
    // buffer `block[0]` points to (which `buf` owns for this call) and the
    // length written into `block[1]`; `block` lives across the call.
    let status =
        unsafe { cortex_m_semihosting::syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    if status != 0 {
        return None;
    }
    let len = block[1].min(buf.len());
    core::str::from_utf8(buf.get(..len)?).ok()
}

/// Ends the emulation with success or failure.
pub fn exit(success: bool) -> ! {
    debug::exit(if success { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    // Only reached if no host took the exit call: stop here.
    loop {
        cortex_m::asm::wfi();
    }
}
