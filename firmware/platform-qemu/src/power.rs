//! Board power control through a Secure PL061 GPIO (`board::Platform::POWER`): QEMU's `virt` board
//! powers off on a rising edge of pin 0 and resets on a rising edge of pin 1. Only the Secure state
//! can reach it.

use board::GpioPower;

/// PL061 direction register offset.
const GPIODIR: usize = 0x400;

/// What to ask the board for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum BoardRequest {
    /// Power the board off (QEMU exits with status 0).
    PowerOff,
    /// Reset the board (QEMU restarts, or exits when started with `-no-reboot`).
    Reset,
}

/// Raises the pin of `gpio` for `request`, then waits for the board to act.
///
/// # Safety
///
/// The Secure GPIO must be mapped as device memory at its physical address, and nothing else may be
/// using it; its pins must be below 8 (a PL061 has eight).
#[cfg(target_arch = "aarch64")]
pub unsafe fn request(gpio: GpioPower, request: BoardRequest) -> ! {
    let pin = match request {
        BoardRequest::PowerOff => gpio.power_off_pin,
        BoardRequest::Reset => gpio.reset_pin,
    };
    let base = gpio.base as *mut u32;
    // The PL061 data register for a pin is at offset (1 << pin) << 2: address bits select the pins.
    let data_offset = (1usize << pin) << 2;
    // SAFETY: the caller guarantees the PL061 is mapped at `base` and unused elsewhere; both offsets
    // are registers inside its 4 KiB frame.
    unsafe {
        let direction = base.byte_add(GPIODIR);
        direction.write_volatile(direction.read_volatile() | (1 << pin));
        base.byte_add(data_offset).write_volatile(0);
        base.byte_add(data_offset).write_volatile(0xFF);
    }
    loop {
        // SAFETY: WFI only waits; it touches no memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}
