//! The protected guest of the demo: runs at EL1 inside a protected VM, MMU off, with only the memory
//! the host donated (from its entry IPA; x0 = how many pages).
//!
//! 1. `HYP_MEMINFO`: the hypervisor's page size must be 4 KiB.
//! 2. Writes a secret pattern over its data pages and computes a checksum.
//! 3. Writes a report (magic, checksum, data pages, page size, then what it found in the registers
//!    the world switch must switch, see [`probe_registers`]) into its report page and shares that
//!    page with the host (`MEM_SHARE`), so the host can read the checksum; then stops sharing it
//!    (`MEM_UNSHARE`: the host loses the page again).
//! 4. Checks every word of its pattern: `SYSTEM_OFF` when intact, `SYSTEM_RESET` when not (the host
//!    counts that as a failure).
//!
//! Memory layout (pages from the entry IPA): image, data pages, the report page, 4 stack pages.
#![no_std]
#![no_main]

use abi::guest::{HYP_MEMINFO, MEM_SHARE, MEM_UNSHARE};
use core::arch::global_asm;

// The shared assembler macros (`zero_bss`) first: they must be defined before their use.
global_asm!(
    firmware_runtime::asm_macros!(),
    r#"
.section .text.entry, "ax"
.global guest_entry
guest_entry:
    /* x0 = pages of guest memory (bit 63: probe first); the stack is at the top of it. */
    and     x9, x0, #0x7fffffffffffffff
    lsl     x9, x9, #12
    ldr     x10, =0x80000000
    add     sp, x10, x9
    zero_bss
    bl      guest_main
2:  b       2b
.ltorg
"#
);

unsafe extern "C" {
    static __image_end: u8;
}

/// Where the guest's memory starts (its entry IPA).
const MEMORY_BASE: u64 = 0x8000_0000;
use abi::PAGE_SIZE;
const STACK_PAGES: u64 = 4;
/// The report's first word: "guest ok".
pub const REPORT_MAGIC: u64 = u64::from_le_bytes(*b"guest ok");
/// Bit 63 of the entry argument: first read the page just past the guest's memory (the hostile-host
/// scenario checks that this exits to the host, and then donates that page).
const PROBE: u64 = 1 << 63;
/// PSCI `SYSTEM_OFF` and `SYSTEM_RESET`.
const SYSTEM_OFF: u32 = 0x8400_0008;
const SYSTEM_RESET: u32 = 0x8400_0009;

/// The values the guest leaves in the registers it probes (the host's attack suite checks that it
/// never sees them): pointer-authentication key A (low half), `TPIDR2_EL0`, `CNTV_CVAL_EL0`,
/// `CNTV_CTL_EL0` (disabled), `CSSELR_EL1`.
const GUEST_MARKERS: [u64; 5] = [
    0x4775_6573_744B_6579,
    0x4775_6573_7454_5032,
    0x0000_6666_0000_0002,
    0,
    1,
];

/// Reads the registers a world switch must switch (what the host may have left there) into
/// `found`, then leaves the guest's own values in them.
fn probe_registers(found: &mut [u64; 5]) {
    *found = firmware_runtime::sysreg::read_switched_registers();
    // SAFETY: this EL1's own registers: the key is not used (pointer authentication is off in
    // SCTLR_EL1), the virtual timer stays disabled, CSSELR only selects which cache ID register
    // reads back.
    unsafe { firmware_runtime::sysreg::write_switched_registers(GUEST_MARKERS) };
}

/// Makes an HVC (`smccc::hvc64`) with `function_id` and `x1` = `argument`; returns `x0`.
fn hvc(function_id: u32, argument: u64) -> u64 {
    let mut arguments = [0; 17];
    arguments[0] = argument;
    smccc::hvc64(function_id, arguments)[0]
}

/// The secret value of the word at `address`: different for every word, not guessable from its
/// neighbours without the key.
fn secret(address: u64) -> u64 {
    (address ^ 0x5EC2_E700_0000_0000)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

fn words(range: core::ops::Range<u64>) -> impl Iterator<Item = *mut u64> {
    range.step_by(8).map(|address| address as *mut u64)
}

#[unsafe(no_mangle)]
extern "C" fn guest_main(argument: u64) -> ! {
    let pages = argument & !PROBE;
    let page_size = hvc(HYP_MEMINFO, 0);
    let image_end = (&raw const __image_end as u64).next_multiple_of(PAGE_SIZE);
    let top = MEMORY_BASE + pages * PAGE_SIZE;
    if argument & PROBE != 0 {
        // SAFETY: the first IPA past the guest's memory: nothing is mapped there, so the load exits to
        // the host (a guest sees nothing but its own pages); it completes once the host has donated a
        // page there. The value is not used.
        let _ = unsafe { (top as *const u64).read_volatile() };
    }
    let report = top - (STACK_PAGES + 1) * PAGE_SIZE;
    if page_size != PAGE_SIZE || report <= image_end {
        hvc(SYSTEM_RESET, 0);
    }
    let data = image_end..report;
    let mut checksum = 0u64;
    for word in words(data.clone()) {
        let value = secret(word as u64);
        // SAFETY: the data pages lie between the image and the report page, inside the memory the host
        // donated and this guest alone owns; nothing else in this program uses them.
        unsafe { word.write_volatile(value) };
        checksum = checksum.wrapping_add(value);
    }
    let report_words = report as *mut u64;
    let data_pages = (data.end - data.start) / PAGE_SIZE;
    let mut found = [0; 5];
    probe_registers(&mut found);
    // SAFETY: the report page is the guest's own page below the stack, used for nothing else.
    unsafe {
        report_words.write_volatile(REPORT_MAGIC);
        report_words.add(1).write_volatile(checksum);
        report_words.add(2).write_volatile(data_pages);
        report_words.add(3).write_volatile(page_size);
        for (index, value) in found.into_iter().enumerate() {
            report_words.add(4 + index).write_volatile(value);
        }
    }
    let shared = hvc(MEM_SHARE, report);
    let unshared = hvc(MEM_UNSHARE, report);
    let mut intact = shared == 0 && unshared == 0;
    let mut verify = 0u64;
    for word in words(data) {
        // SAFETY: as above; the pages are still this guest's.
        let value = unsafe { word.read_volatile() };
        intact &= value == secret(word as u64);
        verify = verify.wrapping_add(value);
    }
    intact &= verify == checksum;
    hvc(if intact { SYSTEM_OFF } else { SYSTEM_RESET }, 0);
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    hvc(SYSTEM_RESET, 0);
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}
