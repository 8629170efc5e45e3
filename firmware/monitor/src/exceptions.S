/*
 * EL3 exception vectors. Every synchronous entry (the SMCs) saves the interrupted general-purpose
 * registers, ELR_EL3 and SPSR_EL3 in a `Context` frame on this CPU's EL3 stack (so the saved
 * Non-secure context is per CPU), calls the Rust handler with a pointer to the frame, then restores the
 * (possibly updated) frame and returns with ERET. FIQ entries save less (see `fiq_entry`). The frame
 * macros come from firmware_runtime::asm_macros! (included before this file).
 */

/*
 * A FIQ handler runs to completion with every exception masked and never reads or changes the
 * interrupted registers, so a FIQ entry saves only what the Rust code may clobber under the
 * procedure-call standard (x0-x18, x30); x19-x29 are preserved by the compiled code itself, and
 * ELR_EL3/SPSR_EL3 stay untouched because no other exception is taken meanwhile. (A FIQ taken in
 * the monitor itself, the deadline timer in a caller's wait, overwrites the SMC's ELR_EL3 and
 * SPSR_EL3 on entry: the wait keeps them.)
 */
.macro fiq_entry handler
    .balign 0x80
    save_caller_saved
    bl      \handler
    b       fiq_return
.endm

/*
 * The lower-EL synchronous vector. An SMC saves only what a Rust call may clobber under the
 * procedure-call standard, x0-x18 and x30, in an `SmcFrame` (services/mod.rs; the same layout as
 * the start of a `Context`): SMC handlers read x0-x17 and write x0-x3 only, x19-x29 and SP_EL3 are
 * callee-saved in the Rust (AAPCS64) ABI the handlers are compiled to, so they restore those
 * themselves, and ELR_EL3/SPSR_EL3 stay as they are: the monitor runs with every exception masked
 * but in a caller's wait, which keeps them across the one FIQ it may take there (the deadline
 * timer; `wait_for_event` in services/cpu.rs). The erratum call (w0 = 0x81000010; SMCCC ignores the upper
 * half of an SMC32 function ID) then goes straight to `handle_erratum_call`, every other SMC to
 * `handle_smc` (the service table). Other exceptions (traps) take the whole frame
 * (`trap_entry`), since they rewrite ELR_EL3/SPSR_EL3. x16/x17 are the test's scratch registers
 * and are saved first.
 */
.macro smc_entry
    .balign 0x80
smc_entry_start:
    sub     sp, sp, #CALLER_SAVED_FRAME_SIZE
    stp     x16, x17, [sp, #0x80]
    mrs     x16, esr_el3
    lsr     x16, x16, #26
    cmp     x16, #0x17
    b.ne    trap_entry
    stp     x0, x1, [sp, #0x00]
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x18, x30, [sp, #0x90]
    mov     w17, #0x0010
    movk    w17, #0x8100, lsl #16
    cmp     w0, w17
    b.ne    smc_other
    bl      handle_erratum_call
    /* x0 is the answer; the rest as saved. */
    ldr     x1, [sp, #0x08]
smc_return_from_x1:
    ldp     x2, x3, [sp, #0x10]
    ldp     x4, x5, [sp, #0x20]
    ldp     x6, x7, [sp, #0x30]
    ldp     x8, x9, [sp, #0x40]
    ldp     x10, x11, [sp, #0x50]
    ldp     x12, x13, [sp, #0x60]
    ldp     x14, x15, [sp, #0x70]
    ldp     x16, x17, [sp, #0x80]
    ldp     x18, x30, [sp, #0x90]
    add     sp, sp, #CALLER_SAVED_FRAME_SIZE
    eret
    /* The assembler stops here if the entry outgrows its 0x80-byte vector. */
    .org    smc_entry_start + 0x80
.endm

/*
 * The lower-EL FIQ vector: the rendezvous SGI's fast path. `handle_fiq_fast` (services/cpu.rs) is a
 * leaf that writes only x0, x8-x11 and x30 (the `bl`; x11 only in the `never-answer` build, saved
 * anyway since three pairs cost what two pairs and a single do): every build checks that in the disassembly
 * (xtask/src/codegen.rs, against the stores below), so this entry saves only those. The handler returns
 * FIQ_HANDLED (all ones) when it has answered and ended the interrupt (or there was none), else the
 * acknowledged INTID, which `fiq_slow` hands to the general handler with every register a call may
 * clobber saved. ELR_EL3/SPSR_EL3 stay untouched (no other exception is taken meanwhile).
 */
.equ FIQ_FAST_FRAME_SIZE, 0x30
.macro fiq_fast_entry
    .balign 0x80
fiq_fast_entry_start:
    stp     x0, x8, [sp, #-FIQ_FAST_FRAME_SIZE]!
    stp     x9, x10, [sp, #0x10]
    stp     x11, x30, [sp, #0x20]
    bl      handle_fiq_fast
    cmn     x0, #1
    b.ne    fiq_slow
fiq_fast_return:
    ldp     x9, x10, [sp, #0x10]
    ldp     x11, x30, [sp, #0x20]
    ldp     x0, x8, [sp], #FIQ_FAST_FRAME_SIZE
    eret
    /* The assembler stops here if the entry outgrows its 0x80-byte vector. */
    .org    fiq_fast_entry_start + 0x80
.endm

.macro vector_entry handler
    .balign 0x80
    save_exception_frame el3
    mov     x0, sp
    bl      \handler
    b       exception_return
.endm

.section .text.vectors, "ax"
.balign 0x800
.global monitor_vectors
monitor_vectors:
    /* Current EL with SP_EL0: never used by the monitor. */
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    /* Current EL with SP_ELx (the monitor itself). */
    vector_entry handle_current_el_sync
    vector_entry handle_unexpected_exception
    fiq_entry handle_fiq
    vector_entry handle_unexpected_exception
    /* Lower EL, AArch64: SMCs and Group 0 interrupts from the Non-secure world. */
    smc_entry
    vector_entry handle_unexpected_exception
    fiq_fast_entry
    vector_entry handle_unexpected_exception
    /* Lower EL, AArch32: not supported (SCR_EL3.RW is 1). */
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception

/* Every SMC but the erratum call: the service table answers in the frame's x0-x3. */
smc_other:
    mov     x0, sp
    bl      handle_smc
    ldp     x0, x1, [sp, #0x00]
    b       smc_return_from_x1

/* A trap (not an SMC): x16/x17 back, then the whole frame. */
trap_entry:
    ldp     x16, x17, [sp, #0x80]
    add     sp, sp, #CALLER_SAVED_FRAME_SIZE
    save_exception_frame el3
    mov     x0, sp
    bl      handle_lower_el_sync
    b       exception_return

/* A FIQ the fast path left alone (x0 = its INTID): the general handler, then the fast frame. */
fiq_slow:
    save_caller_saved
    bl      handle_fiq_slow
    restore_caller_saved
    b       fiq_fast_return

fiq_return:
    restore_caller_saved
    eret

exception_return:
    restore_exception_frame el3
    eret
