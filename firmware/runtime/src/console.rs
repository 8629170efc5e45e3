//! The console: UART0 (the Non-secure PL011), shared by every image so that the QEMU test harness
//! reads one log. Lines from different CPUs are kept whole by a spin lock around each `println!`.

use arm_pl011_uart::{DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart};
use core::fmt::{self, Write};
use core::ptr::NonNull;
use safe_mmio::UniqueMmioPointer;
use spin::mutex::SpinMutex;

use board::Uart as ConsoleUart;

/// The console, once [`init`] has run.
static CONSOLE: SpinMutex<Option<Uart<'static>>> = SpinMutex::new(None);

/// Sets up the board's console UART (`board::Platform::UART`) at 115200 8N1 and makes it the
/// console. Calling it again only reconfigures the UART.
///
/// # Safety
///
/// The UART must be mapped (or the MMU off) at its physical address and not used by anything else in
/// this image.
pub unsafe fn init(console: ConsoleUart) {
    let Some(registers) = NonNull::new(console.base as *mut PL011Registers) else {
        return;
    };
    // SAFETY: the caller guarantees that the UART is reachable at its physical address and unaliased.
    let mut uart = Uart::new(unsafe { UniqueMmioPointer::new(registers) });
    let config = LineConfig {
        data_bits: DataBits::Bits8,
        parity: Parity::None,
        stop_bits: StopBits::One,
    };
    // The baud rate is valid for the clock, so this cannot fail; a console is best effort anyway.
    let _ = uart.enable(config, 115_200, console.clock_hz);
    *CONSOLE.lock() = Some(uart);
}

/// Writes formatted text to the console; does nothing before [`init`].
pub fn write_fmt(arguments: fmt::Arguments) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_fmt(arguments);
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console (one lock for the whole line).
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
