/*
 * EL3 exception vectors. Every synchronous entry (the SMCs) saves the interrupted general-purpose
 * registers, ELR_EL3 and SPSR_EL3 in a `Context` frame on this CPU's EL3 stack (so the saved
 * Non-secure context is per CPU), calls the Rust handler with a pointer to the frame, then restores the
 * (possibly updated) frame and returns with ERET. FIQ entries save less (see `fiq_entry`). The frame
 * macros come from platform_qemu::asm_macros! (included before this file).
 */

/*
 * A FIQ handler runs to completion with every exception masked and never reads or changes the
 * interrupted registers, so a FIQ entry saves only what the Rust code may clobber under the
 * procedure-call standard (x0-x18, x30); x19-x29 are preserved by the compiled code itself, and
 * ELR_EL3/SPSR_EL3 stay untouched because no other exception is taken meanwhile.
 */
.macro fiq_entry handler
    .balign 0x80
    save_caller_saved
    bl      \handler
    b       fiq_return
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
    restore_caller_saved
    eret

exception_return:
    restore_exception_frame el3
    eret
