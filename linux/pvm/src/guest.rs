//! The protected guest: a few dozen AArch64 instructions at EL1 with the MMU off, assembled by the
//! compiler into the launcher itself (`global_asm!`) and copied into guest memory.
//!
//! Why this form: it needs no second build (a bare-metal crate for the firmware target would be
//! one more image for xtask to build, convert and ship) and no hand-encoded bytes (unreadable and
//! unchecked). The code is position-independent (`adr` only), so the bytes between
//! [`code`]'s two labels run wherever the launcher puts them.
//!
//! What it does, in order (guest physical addresses relative to its memory's base, which is where
//! the code runs):
//! 1. reads its parameters (memory size, secret seed) from [`PARAMETERS_OFFSET`];
//! 2. writes the status page ([`STATUS_OFFSET`]) and shares it with the host (`MEM_SHARE`,
//!    `0xC600_0003`, x1 = IPA): it stays shared, so the host can read the results;
//! 3. writes the secret pattern (`seed ^ address`, 8 bytes at a time) over every page from
//!    [`PATTERN_OFFSET`] to the end: each first touch makes pKVM donate that page (one erratum
//!    call per page upstream);
//! 4. shares the first pattern page and unshares it again (`MEM_UNSHARE`, `0xC600_0004`: the host
//!    loses access, another erratum call);
//! 5. records the hypercalls' results and a done marker in the status page and calls PSCI
//!    `SYSTEM_OFF`.

/// Offset of the parameter block in the code page: `[0]` memory size in bytes, `[1]` the seed.
pub const PARAMETERS_OFFSET: usize = 0xF00;
/// Offset of the status page, shared with the host for the whole run.
pub const STATUS_OFFSET: usize = 0x1000;
/// Offset of the first page the pattern covers; this page is also shared and unshared.
pub const PATTERN_OFFSET: usize = 0x2000;
/// Status page word 0 once the guest has finished: "PVM DONE".
pub const DONE_MAGIC: u64 = 0x454E_4F44_204D_5650;
/// pKVM's guest hypercall `MEM_SHARE` (SMCCC vendor hypervisor service, function 3).
pub const MEM_SHARE: u32 = 0xC600_0003;
/// pKVM's guest hypercall `MEM_UNSHARE` (function 4).
pub const MEM_UNSHARE: u32 = 0xC600_0004;

/// What the guest wrote into its status page (eight 64-bit words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// [`DONE_MAGIC`] when the guest got to the end.
    pub done: u64,
    /// x0 of `MEM_SHARE` of the status page (0 = success).
    pub share_status: u64,
    /// x0 of `MEM_SHARE` of the first pattern page.
    pub share_pattern: u64,
    /// x0 of `MEM_UNSHARE` of that page.
    pub unshare_pattern: u64,
    /// Pages the guest wrote the pattern over.
    pub pattern_pages: u64,
    /// Words of the unshared page that the guest read back intact after the unshare.
    pub intact_after_unshare: u64,
}

impl Status {
    /// Decodes the first words of the status page.
    pub fn from_words(words: &[u64; 6]) -> Self {
        Self {
            done: words[0],
            share_status: words[1],
            share_pattern: words[2],
            unshare_pattern: words[3],
            pattern_pages: words[4],
            intact_after_unshare: words[5],
        }
    }
}

/// The 64-bit word the guest writes at guest physical address `address`.
pub const fn pattern(seed: u64, address: u64) -> u64 {
    seed ^ address
}

core::arch::global_asm!(
    ".pushsection .rodata.pvm_guest, \"a\"",
    ".balign 4096",
    ".global pvm_guest_start",
    "pvm_guest_start:",
    // x20 = base of guest memory (where this code runs), x21 = size, x22 = seed, x23 = status page.
    "    adr   x20, pvm_guest_start",
    "    ldr   x21, [x20, #{parameters}]",
    "    ldr   x22, [x20, #{parameters} + 8]",
    "    add   x23, x20, #{status}",
    // Touch the status page (the guest owns it once it has faulted it in), then share it.
    "    str   xzr, [x23]",
    "    movz  x0, #0x0003",
    "    movk  x0, #0xC600, lsl #16",
    "    mov   x1, x23",
    "    mov   x2, #0",
    "    mov   x3, #0",
    "    hvc   #0",
    "    str   x0, [x23, #8]",
    // The secret over every page from PATTERN_OFFSET to the end: value = seed ^ address.
    "    add   x1, x20, #{pattern}",
    "    add   x2, x20, x21",
    "1:  eor   x3, x22, x1",
    "    str   x3, [x1], #8",
    "    cmp   x1, x2",
    "    b.lo  1b",
    "    sub   x4, x21, #{pattern}",
    "    lsr   x4, x4, #12",
    "    str   x4, [x23, #32]",
    // Share the first pattern page, then unshare it: the host loses it again.
    "    movz  x0, #0x0003",
    "    movk  x0, #0xC600, lsl #16",
    "    add   x1, x20, #{pattern}",
    "    mov   x2, #0",
    "    mov   x3, #0",
    "    hvc   #0",
    "    str   x0, [x23, #16]",
    "    movz  x0, #0x0004",
    "    movk  x0, #0xC600, lsl #16",
    "    add   x1, x20, #{pattern}",
    "    mov   x2, #0",
    "    mov   x3, #0",
    "    hvc   #0",
    "    str   x0, [x23, #24]",
    // Count the words of that page still holding the pattern (the guest's data survived).
    "    add   x1, x20, #{pattern}",
    "    add   x2, x1, #4096",
    "    mov   x5, #0",
    "2:  ldr   x3, [x1]",
    "    eor   x4, x22, x1",
    "    cmp   x3, x4",
    "    cinc  x5, x5, eq",
    "    add   x1, x1, #8",
    "    cmp   x1, x2",
    "    b.lo  2b",
    "    str   x5, [x23, #40]",
    // Done: "PVM DONE", then PSCI SYSTEM_OFF.
    "    movz  x6, #0x5650",
    "    movk  x6, #0x204D, lsl #16",
    "    movk  x6, #0x4F44, lsl #32",
    "    movk  x6, #0x454E, lsl #48",
    "    str   x6, [x23]",
    "    movz  x0, #0x0008",
    "    movk  x0, #0x8400, lsl #16",
    "    hvc   #0",
    "3:  wfi",
    "    b     3b",
    ".global pvm_guest_end",
    "pvm_guest_end:",
    ".popsection",
    parameters = const PARAMETERS_OFFSET,
    status = const STATUS_OFFSET,
    pattern = const PATTERN_OFFSET,
);

unsafe extern "C" {
    static pvm_guest_start: u8;
    static pvm_guest_end: u8;
}

/// The guest's machine code.
pub fn code() -> &'static [u8] {
    // SAFETY: both symbols are labels of the one `global_asm!` block above, in one read-only
    // section, `pvm_guest_end` after `pvm_guest_start`: the bytes between them are the code,
    // initialised and never written.
    unsafe {
        let start = &raw const pvm_guest_start;
        let end = &raw const pvm_guest_end;
        let length = usize::try_from(end.offset_from(start)).unwrap_or(0);
        core::slice::from_raw_parts(start, length)
    }
}
