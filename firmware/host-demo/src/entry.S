/*
 * Entry points and EL1 vectors of the host demo, and the SME store routines.
 *
 * host_entry            boot CPU, x0 = device tree (from the hypervisor).
 * host_secondary_entry  CPUs started with CPU_ON, x0 = the context id: the CPU's index in bits
 *                       [7:0], bit 32 set when the CPU is started a second time.
 *
 * A synchronous exception at EL1 (the aborts the hypervisor injects when the host touches memory it
 * gave away) calls host_sync_exception, which counts it and steps over the faulting instruction.
 * The macros come from firmware_runtime::asm_macros! (included before this file).
 */
.arch armv9-a+sme

.macro set_stack index
    set_stack_top \index, 0x8000, x10, x11
    adr     x10, host_vectors
    msr     vbar_el1, x10
    isb
.endm

.section .text.entry, "ax"
.global host_entry
host_entry:
    mov     x19, x0
    mov     x9, #0
    set_stack x9
    zero_bss
    mov     x0, x19
    bl      host_main
2:  b       2b

.global host_secondary_entry
host_secondary_entry:
    mov     x20, x0
    and     x19, x0, #0xff
    set_stack x19
    mov     x0, x20
    bl      host_secondary_main
3:  b       3b
.ltorg

.macro save_and_call handler
    save_caller_saved
    bl      \handler
    restore_caller_saved
    eret
.endm

.section .text.vectors, "ax"
.balign 0x800
host_vectors:
    /* Current EL with SP_EL0: never used. */
    vector_branch unexpected
    vector_branch unexpected
    vector_branch unexpected
    vector_branch unexpected
    /* Current EL with SP_EL1: the host itself. */
    vector_branch sync_current
    vector_branch unexpected
    vector_branch unexpected
    vector_branch unexpected
    /* Lower EL, AArch64 and AArch32: unexpected. */
    .rept 8
    vector_branch unexpected
    .endr

sync_current:
    save_and_call host_sync_exception

unexpected:
    mrs     x0, esr_el1
    mrs     x1, elr_el1
    b       host_unexpected_exception

/*
 * sme_store_loop(buffer, stop, rounds): Streaming mode on; until *stop is non-zero, store ZA row 0
 * (STR ZA) and a streaming SVE vector (ST1B) into buffer; then *rounds = rounds done, Streaming mode
 * off.
 */
.section .text, "ax"
.global sme_store_loop
sme_store_loop:
    smstart
    ptrue   p0.b
    dup     z0.b, #0x5a
    zero    {{za}}
    mov     w12, #0
    mov     x3, #0
0:  str     za[w12, 0], [x0]
    st1b    {{z0.b}}, p0, [x0, #1, mul vl]
    add     x3, x3, #1
    ldr     x4, [x1]
    cbz     x4, 0b
    str     x3, [x2]
    smstop
    ret

/* plain_store_loop(buffer, stop, rounds): the same with ordinary stores (no SME on this CPU). */
.global plain_store_loop
plain_store_loop:
    mov     x3, #0
0:  stp     x3, x3, [x0]
    add     x3, x3, #1
    ldr     x4, [x1]
    cbz     x4, 0b
    str     x3, [x2]
    ret

/* sme_touch(address): one streaming SVE store and one STR ZA at address, in Streaming mode. */
.global sme_touch
sme_touch:
    smstart
    ptrue   p0.b
    dup     z0.b, #0x77
    mov     w12, #0
    st1b    {{z0.b}}, p0, [x0]
    str     za[w12, 0], [x0]
    smstop
    ret
.ltorg
