//! Board power control (`board::Platform::POWER`): a Secure PL061 GPIO on QEMU `virt` (a rising
//! edge of one pin powers off, of another resets), a Secure command register on QEMU `sbsa-ref`
//! (its embedded controller). Only the Secure state can reach either.
//!
//! The GPIO is driven by `arm-pl061` (the field's PL061 driver, as in Rusted Firmware-A); the
//! command register is one word that no crate describes.

use board::{CommandRegisterPower, GpioPower, PowerControl};

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
/// else may be using it.
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

/// Raises the pin of `gpio` for `request`: output, low, then high (the edge is what the board
/// watches).
///
/// # Safety
///
/// As for [`request`].
#[cfg(target_arch = "aarch64")]
unsafe fn raise_pin(gpio: GpioPower, request: BoardRequest) {
    use arm_pl061::{PL061, PL061Registers};
    use core::ptr::NonNull;
    use safe_mmio::UniqueMmioPointer;

    let pin = match request {
        BoardRequest::PowerOff => gpio.power_off_pin,
        BoardRequest::Reset => gpio.reset_pin,
    } as usize;
    let Some(registers) = NonNull::new(gpio.base as *mut PL061Registers) else {
        return;
    };
    // SAFETY: the caller guarantees the PL061 is mapped as device memory at its base and that
    // nothing else uses it, so this is the only pointer to its registers.
    let mut pl061 = PL061::new(unsafe { UniqueMmioPointer::new(registers) });
    // A pin beyond the PL061's eight is a board-description error: nothing is driven, and the
    // caller waits for a power change that does not come (the QEMU run times out, visibly).
    if pl061.config().into_output(pin).is_ok() {
        let _ = pl061.pin_set(pin, false);
        let _ = pl061.pin_set(pin, true);
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
