//! Board power control (`board::Platform::POWER`): a Secure PL061 GPIO on QEMU `virt` (a rising
//! edge of one pin powers off, of another resets), a Secure command register on QEMU `sbsa-ref`
//! (its embedded controller). Only the Secure state can reach either.
//!
//! What we wrote ourselves and why: the GPIO takes three register writes; `arm-pl061` would add a
//! dependency for them, and the command register has no crate at all.

use board::{CommandRegisterPower, GpioPower, PowerControl};

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

/// Asks the board's power control for `request`, then waits for the board to act.
///
/// # Safety
///
/// The power-control device must be mapped as device memory at its physical address, and nothing
/// else may be using it; GPIO pins must be below 8 (a PL061 has eight).
#[cfg(target_arch = "aarch64")]
pub unsafe fn request(power: PowerControl, request: BoardRequest) -> ! {
    match power {
        // SAFETY: the caller's guarantees, passed on.
        PowerControl::Gpio(gpio) => unsafe { raise_pin(gpio, request) },
        // SAFETY: the caller's guarantees, passed on.
        PowerControl::CommandRegister(register) => unsafe { write_command(register, request) },
    }
    loop {
        // SAFETY: WFI only waits; it touches no memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// Raises the pin of `gpio` for `request`.
///
/// # Safety
///
/// As for [`request`].
#[cfg(target_arch = "aarch64")]
unsafe fn raise_pin(gpio: GpioPower, request: BoardRequest) {
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
}

/// Writes the command for `request` to the board's command register.
///
/// # Safety
///
/// As for [`request`].
#[cfg(target_arch = "aarch64")]
unsafe fn write_command(register: CommandRegisterPower, request: BoardRequest) {
    let command = match request {
        BoardRequest::PowerOff => register.power_off,
        BoardRequest::Reset => register.reset,
    };
    // SAFETY: the caller guarantees the device is mapped at `base` and unused elsewhere; its first
    // word is the command register.
    unsafe { (register.base as *mut u32).write_volatile(command) };
}
