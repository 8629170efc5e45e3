//! What the images' entry code and exception vectors share: the frame in which the monitor (EL3) and
//! the hypervisor (EL2) save the interrupted world's general-purpose registers, and the assembler
//! macros ([`asm_macros!`](crate::asm_macros)) that the images' assembly is written with.
//!
//! Each image keeps its own vectors and entry points: which exceptions it handles and how differ
//! (the monitor saves only the caller-saved registers on a FIQ, the hypervisor switches to a guest's
//! context, the payloads only report), and so do the registers (`ELR_EL3` or `ELR_EL2`), which the
//! macros take as an argument.

/// The interrupted world's state as `save_exception_frame` (in [`asm_macros!`](crate::asm_macros))
/// pushes it on the stack of the exception level that took the exception: x0-x30 at offset 0,
/// `ELR_ELx` at 0xF8, `SPSR_ELx` at 0x100, 0x110 bytes in all.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0 to x30 of the interrupted code.
    pub registers: [u64; 31],
    /// Where the interrupted code continues (`ELR_ELx`).
    pub return_address: u64,
    /// The interrupted code's PSTATE (`SPSR_ELx`).
    pub saved_state: u64,
    /// Keeps the stack pointer 16-byte aligned.
    padding: u64,
}

/// Size of [`ExceptionFrame`] (`EXCEPTION_FRAME_SIZE` in the assembly).
pub const EXCEPTION_FRAME_SIZE: usize = 0x110;

const _: () = assert!(size_of::<ExceptionFrame>() == EXCEPTION_FRAME_SIZE);

/// The assembler macros shared by the images, as a string for `global_asm!`. Each image puts it
/// first in its one `global_asm!` (a macro may be defined only once per image, and before its use):
///
/// ```ignore
/// global_asm!(firmware_runtime::asm_macros!(), include_str!("entry.S"), MAX_CPUS = const MAX_CPUS);
/// ```
///
/// | macro | what it does |
/// |---|---|
/// | `cpu_index_or_park reg, scratch1, scratch2, max_cpus, cluster_shift, park` | `reg` = (Aff1 shifted left by `cluster_shift`) + Aff0 from `MPIDR_EL1` (the board's `ClusterNumbering`); branches to `park` when Aff2 or Aff3 is set, Aff0 >= `1 << cluster_shift` or the index >= `max_cpus` |
/// | `set_stack_top index, size, scratch1, scratch2` | `sp` = `__stacks_start` + (`index` + 1) * `size` |
/// | `zero_bss` | zeroes `__bss_start`..`__bss_end` 8 bytes at a time (uses x1, x2, local labels 0 and 1) |
/// | `zero_x1_to_x30` | x1 to x30 = 0, before entering a lower exception level |
/// | `save_exception_frame el` / `restore_exception_frame el` | push / pop an [`ExceptionFrame`] with `ELR_<el>` and `SPSR_<el>` (no `ERET`) |
/// | `save_caller_saved` / `restore_caller_saved` | push / pop x0-x18 and x30 (what a call may clobber), `CALLER_SAVED_FRAME_SIZE` bytes |
/// | `vector_branch label` | one 0x80-aligned vector entry that branches to `label` |
/// | `store_x0_to_x17` / `load_x0_to_x17` | the part both frames share: x0-x17 at `sp` + 0x00..0x90 |
///
/// A macro rather than a `.S` file: `include_str!` resolves its path from the file it is expanded
/// in, which would be the image's, not this crate's.
#[macro_export]
macro_rules! asm_macros {
    () => {
        r#"
/* Assembler macros shared by the firmware images (firmware_runtime::asm_macros!). */

.equ EXCEPTION_FRAME_SIZE, 0x110
.equ CALLER_SAVED_FRAME_SIZE, 0xa0

/* reg = Aff1 << cluster_shift | Aff0 (board::ClusterNumbering); Aff2 and Aff3 must be zero, Aff0
   below 1 << cluster_shift and the index below max_cpus. */
.macro cpu_index_or_park reg, scratch1, scratch2, max_cpus, cluster_shift, park
    mrs     \scratch1, mpidr_el1
    ubfx    \scratch2, \scratch1, #16, #8
    cbnz    \scratch2, \park
    ubfx    \scratch2, \scratch1, #32, #8
    cbnz    \scratch2, \park
    ubfx    \reg, \scratch1, #0, #8
    cmp     \reg, #(1 << \cluster_shift)
    b.hs    \park
    ubfx    \scratch2, \scratch1, #8, #8
    add     \reg, \reg, \scratch2, lsl #\cluster_shift
    cmp     \reg, #\max_cpus
    b.hs    \park
.endm

/* sp = top of the stack of CPU index: __stacks_start + (index + 1) * size. */
.macro set_stack_top index, size, scratch1, scratch2
    ldr     \scratch1, =__stacks_start
    mov     \scratch2, #\size
    madd    \scratch1, \index, \scratch2, \scratch1
    add     sp, \scratch1, \scratch2
.endm

/* Zeroes __bss_start..__bss_end, 8 bytes at a time. Uses x1, x2 and the local labels 0 and 1. */
.macro zero_bss
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
0:  cmp     x1, x2
    b.hs    1f
    str     xzr, [x1], #8
    b       0b
1:
.endm

/* x1-x30 = 0: nothing of this level's state stays in the registers of the level it enters. */
.macro zero_x1_to_x30
    .irp    n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    mov     x\n, xzr
    .endr
    .irp    n, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30
    mov     x\n, xzr
    .endr
.endm

/* x0-x17 to / from [sp, #0x00]..[sp, #0x88]: the start of both frames below. */
.macro store_x0_to_x17
    stp     x0, x1, [sp, #0x00]
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x16, x17, [sp, #0x80]
.endm

.macro load_x0_to_x17
    ldp     x0, x1, [sp, #0x00]
    ldp     x2, x3, [sp, #0x10]
    ldp     x4, x5, [sp, #0x20]
    ldp     x6, x7, [sp, #0x30]
    ldp     x8, x9, [sp, #0x40]
    ldp     x10, x11, [sp, #0x50]
    ldp     x12, x13, [sp, #0x60]
    ldp     x14, x15, [sp, #0x70]
    ldp     x16, x17, [sp, #0x80]
.endm

/* Pushes an ExceptionFrame: x0-x30 at 0, ELR_<el> at 0xf8, SPSR_<el> at 0x100. */
.macro save_exception_frame el
    sub     sp, sp, #EXCEPTION_FRAME_SIZE
    store_x0_to_x17
    stp     x18, x19, [sp, #0x90]
    stp     x20, x21, [sp, #0xa0]
    stp     x22, x23, [sp, #0xb0]
    stp     x24, x25, [sp, #0xc0]
    stp     x26, x27, [sp, #0xd0]
    stp     x28, x29, [sp, #0xe0]
    mrs     x0, elr_\el
    mrs     x1, spsr_\el
    stp     x30, x0, [sp, #0xf0]
    str     x1, [sp, #0x100]
.endm

/* Pops an ExceptionFrame, ELR_<el> and SPSR_<el> included; the caller then returns with ERET. */
.macro restore_exception_frame el
    ldr     x1, [sp, #0x100]
    ldp     x30, x0, [sp, #0xf0]
    msr     elr_\el, x0
    msr     spsr_\el, x1
    load_x0_to_x17
    ldp     x18, x19, [sp, #0x90]
    ldp     x20, x21, [sp, #0xa0]
    ldp     x22, x23, [sp, #0xb0]
    ldp     x24, x25, [sp, #0xc0]
    ldp     x26, x27, [sp, #0xd0]
    ldp     x28, x29, [sp, #0xe0]
    add     sp, sp, #EXCEPTION_FRAME_SIZE
.endm

/* Pushes what a call may clobber under the procedure-call standard: x0-x18 and x30. */
.macro save_caller_saved
    sub     sp, sp, #CALLER_SAVED_FRAME_SIZE
    store_x0_to_x17
    stp     x18, x30, [sp, #0x90]
.endm

/* Pops what save_caller_saved pushed. */
.macro restore_caller_saved
    load_x0_to_x17
    ldp     x18, x30, [sp, #0x90]
    add     sp, sp, #CALLER_SAVED_FRAME_SIZE
.endm

/* One entry of a vector table (0x80 bytes apart): a branch to label. */
.macro vector_branch label
    .balign 0x80
    b       \label
.endm
"#
    };
}
