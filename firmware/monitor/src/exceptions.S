/*
 * EL3 exception vectors. Every synchronous entry (the SMCs) saves the interrupted general-purpose
 * registers, ELR_EL3 and SPSR_EL3 in a `Context` frame on this CPU's EL3 stack (so the saved
 * Non-secure context is per CPU), calls the Rust handler with a pointer to the frame, then restores the
 * (possibly updated) frame and returns with ERET. FIQ entries save less (see `fiq_entry`).
 */

.equ CONTEXT_SIZE, 0x110

.macro save_context
    sub     sp, sp, #CONTEXT_SIZE
    stp     x0, x1, [sp, #0x00]
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x16, x17, [sp, #0x80]
    stp     x18, x19, [sp, #0x90]
    stp     x20, x21, [sp, #0xa0]
    stp     x22, x23, [sp, #0xb0]
    stp     x24, x25, [sp, #0xc0]
    stp     x26, x27, [sp, #0xd0]
    stp     x28, x29, [sp, #0xe0]
    mrs     x0, elr_el3
    mrs     x1, spsr_el3
    stp     x30, x0, [sp, #0xf0]
    str     x1, [sp, #0x100]
.endm

/*
 * A FIQ handler runs to completion with every exception masked and never reads or changes the
 * interrupted registers, so a FIQ entry saves only what the Rust code may clobber under the
 * procedure-call standard (x0-x18, x30); x19-x29 are preserved by the compiled code itself, and
 * ELR_EL3/SPSR_EL3 stay untouched because no other exception is taken meanwhile.
 */
.equ FIQ_FRAME_SIZE, 0xa0

.macro fiq_entry handler
    .balign 0x80
    sub     sp, sp, #FIQ_FRAME_SIZE
    stp     x0, x1, [sp, #0x00]
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x16, x17, [sp, #0x80]
    stp     x18, x30, [sp, #0x90]
    bl      \handler
    b       fiq_return
.endm

.macro vector_entry handler
    .balign 0x80
    save_context
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
    vector_entry handle_lower_el_sync
    vector_entry handle_unexpected_exception
    fiq_entry handle_fiq
    vector_entry handle_unexpected_exception
    /* Lower EL, AArch32: not supported (SCR_EL3.RW is 1). */
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception
    vector_entry handle_unexpected_exception

fiq_return:
    ldp     x0, x1, [sp, #0x00]
    ldp     x2, x3, [sp, #0x10]
    ldp     x4, x5, [sp, #0x20]
    ldp     x6, x7, [sp, #0x30]
    ldp     x8, x9, [sp, #0x40]
    ldp     x10, x11, [sp, #0x50]
    ldp     x12, x13, [sp, #0x60]
    ldp     x14, x15, [sp, #0x70]
    ldp     x16, x17, [sp, #0x80]
    ldp     x18, x30, [sp, #0x90]
    add     sp, sp, #FIQ_FRAME_SIZE
    eret

exception_return:
    ldr     x1, [sp, #0x100]
    ldp     x30, x0, [sp, #0xf0]
    msr     elr_el3, x0
    msr     spsr_el3, x1
    ldp     x0, x1, [sp, #0x00]
    ldp     x2, x3, [sp, #0x10]
    ldp     x4, x5, [sp, #0x20]
    ldp     x6, x7, [sp, #0x30]
    ldp     x8, x9, [sp, #0x40]
    ldp     x10, x11, [sp, #0x50]
    ldp     x12, x13, [sp, #0x60]
    ldp     x14, x15, [sp, #0x70]
    ldp     x16, x17, [sp, #0x80]
    ldp     x18, x19, [sp, #0x90]
    ldp     x20, x21, [sp, #0xa0]
    ldp     x22, x23, [sp, #0xb0]
    ldp     x24, x25, [sp, #0xc0]
    ldp     x26, x27, [sp, #0xd0]
    ldp     x28, x29, [sp, #0xe0]
    add     sp, sp, #CONTEXT_SIZE
    eret
