//! Arm semihosting: how a test image tells QEMU (started with `-semihosting`) to exit with a status.

/// Semihosting operation `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the reason code that makes the exit status meaningful.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// Makes QEMU exit with `status`. Without `-semihosting` the `HLT` instruction traps instead; the
/// function then never returns either (it waits for interrupts forever).
#[cfg(target_arch = "aarch64")]
pub fn exit(status: u32) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
    // SAFETY: `HLT #0xF000` is the semihosting call; it reads the two-word parameter block whose
    // address is in x1 (which lives until the call returns) and writes only x0.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT => _,
            in("x1") block.as_ptr(),
            options(nostack, readonly),
        );
    }
    loop {
        // SAFETY: WFI only waits; it touches no memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}
