/*
 * Entry points, exception vectors and the guest world switch of the hypervisor (EL2, AArch64).
 *
 * hyp_entry            boot CPU from the monitor: x0 = device tree.
 * hyp_secondary_entry  a CPU the host started with CPU_ON, or one resuming from a power-down
 *                      CPU_SUSPEND: the monitor enters it here because the hypervisor rewrote the call.
 * Both reset SCTLR_EL2 first (MMU and caches off: a CPU that was switched off comes back with
 * whatever it had), take this CPU's stack and vectors, and continue in Rust.
 *
 * Lower-EL exceptions come from the host or, while a vCPU runs on this CPU, from a guest. TPIDR_EL2
 * points at this CPU's PerCpu block: word 0 is the running guest's VcpuContext (0 when the host
 * runs), word 1 the hypervisor stack pointer to return to when the guest exits. A host trap is saved
 * as an ExceptionFrame (`traps::TrapFrame`) with save_exception_frame el2; the macros come from
 * firmware_runtime::asm_macros! (included before this file).
 */

.equ CALLEE_SAVED_SIZE, 0x60

.macro reset_el2 index
    ldr     x9, ={SCTLR_EL2_RESET}
    msr     sctlr_el2, x9
    isb
    cpu_index_or_park \index, x9, x10, {MAX_CPUS}, {CLUSTER_SHIFT}, hyp_park
    set_stack_top \index, {STACK_SIZE}, x9, x10
    adr     x9, hyp_vectors
    msr     vbar_el2, x9
    isb
.endm

.section .text.entry, "ax"
.global hyp_entry
hyp_entry:
    mov     x20, x0
    reset_el2 x19
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
0:  cmp     x1, x2
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:  mov     x0, x20
    mov     x1, x19
    bl      hyp_main
    b       hyp_park

.global hyp_secondary_entry
hyp_secondary_entry:
    reset_el2 x19
    mov     x0, x19
    bl      hyp_secondary_main
    b       hyp_park

.global hyp_park
hyp_park:
    wfi
    b       hyp_park

/*
 * enter_host(entry, argument, spsr): leaves EL2 for the host with x0 = argument, the other
 * general-purpose registers zero and an empty EL2 stack (reset by the next trap frame anyway).
 */
.global enter_host
enter_host:
    msr     elr_el2, x0
    msr     spsr_el2, x2
    mov     x0, x1
    zero_x1_to_x30
    eret
.ltorg

/* A lower-EL exception of kind `kind` (0 sync, 1 IRQ, 2 FIQ, 3 SError): guest or host? */
.macro lower_el_handler kind
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el2
    ldr     x1, [x0]
    cbnz    x1, 1f
    ldp     x0, x1, [sp], #16
    save_exception_frame el2
    mov     x0, sp
    mov     x1, #\kind
    bl      handle_host_trap
    b       host_return
1:  str     x2, [x1, #0x10]
    mov     x2, #\kind
    b       guest_exit
.endm

.section .text.vectors, "ax"
.balign 0x800
hyp_vectors:
    /* Current EL with SP_EL0: never used. */
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception
    /* Current EL with SP_EL2: a hypervisor bug. */
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception
    /* Lower EL, AArch64. */
    vector_branch lower_sync
    vector_branch lower_irq
    vector_branch lower_fiq
    vector_branch lower_serror
    /* Lower EL, AArch32: not supported (HCR_EL2.RW is 1). */
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception
    vector_branch current_el_exception

lower_sync:
    lower_el_handler 0
lower_irq:
    lower_el_handler 1
lower_fiq:
    lower_el_handler 2
lower_serror:
    lower_el_handler 3

current_el_exception:
    mrs     x0, esr_el2
    mrs     x1, elr_el2
    mrs     x2, far_el2
    b       hyp_exception_at_el2

host_return:
    restore_exception_frame el2
    eret

/*
 * u64 guest_enter(VcpuContext *context): saves the hypervisor's callee-saved registers, loads the
 * guest's registers and enters it. Returns (through guest_exit) the kind of exception that ended
 * the run, with the guest's registers saved back into *context.
 */
.global guest_enter
guest_enter:
    sub     sp, sp, #CALLEE_SAVED_SIZE
    stp     x19, x20, [sp, #0x00]
    stp     x21, x22, [sp, #0x10]
    stp     x23, x24, [sp, #0x20]
    stp     x25, x26, [sp, #0x30]
    stp     x27, x28, [sp, #0x40]
    stp     x29, x30, [sp, #0x50]
    mrs     x1, tpidr_el2
    mov     x2, sp
    str     x2, [x1, #8]
    str     x0, [x1, #0]
    ldr     x2, [x0, #0xf8]
    msr     elr_el2, x2
    ldr     x2, [x0, #0x100]
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #0x10]
    ldp     x4, x5, [x0, #0x20]
    ldp     x6, x7, [x0, #0x30]
    ldp     x8, x9, [x0, #0x40]
    ldp     x10, x11, [x0, #0x50]
    ldp     x12, x13, [x0, #0x60]
    ldp     x14, x15, [x0, #0x70]
    ldp     x16, x17, [x0, #0x80]
    ldp     x18, x19, [x0, #0x90]
    ldp     x20, x21, [x0, #0xa0]
    ldp     x22, x23, [x0, #0xb0]
    ldp     x24, x25, [x0, #0xc0]
    ldp     x26, x27, [x0, #0xd0]
    ldp     x28, x29, [x0, #0xe0]
    ldr     x30, [x0, #0xf0]
    ldp     x0, x1, [x0, #0x00]
    eret

/* x0 = PerCpu, x1 = guest context, x2 = exception kind (guest x2 saved); guest x0, x1 on the stack. */
guest_exit:
    str     x3, [x1, #0x18]
    stp     x4, x5, [x1, #0x20]
    stp     x6, x7, [x1, #0x30]
    stp     x8, x9, [x1, #0x40]
    stp     x10, x11, [x1, #0x50]
    stp     x12, x13, [x1, #0x60]
    stp     x14, x15, [x1, #0x70]
    stp     x16, x17, [x1, #0x80]
    stp     x18, x19, [x1, #0x90]
    stp     x20, x21, [x1, #0xa0]
    stp     x22, x23, [x1, #0xb0]
    stp     x24, x25, [x1, #0xc0]
    stp     x26, x27, [x1, #0xd0]
    stp     x28, x29, [x1, #0xe0]
    str     x30, [x1, #0xf0]
    ldp     x3, x4, [sp], #16
    stp     x3, x4, [x1, #0x00]
    mrs     x3, elr_el2
    str     x3, [x1, #0xf8]
    mrs     x3, spsr_el2
    str     x3, [x1, #0x100]
    str     xzr, [x0, #0]
    ldr     x3, [x0, #8]
    mov     sp, x3
    ldp     x19, x20, [sp, #0x00]
    ldp     x21, x22, [sp, #0x10]
    ldp     x23, x24, [sp, #0x20]
    ldp     x25, x26, [sp, #0x30]
    ldp     x27, x28, [sp, #0x40]
    ldp     x29, x30, [sp, #0x50]
    add     sp, sp, #CALLEE_SAVED_SIZE
    mov     x0, x2
    ret
.ltorg
