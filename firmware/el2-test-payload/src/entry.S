/*
 * Entry points of the test payload at Non-secure EL2. `payload_start`: the boot CPU, x0 = device
 * tree. `payload_secondary`: CPUs started by CPU_ON or resuming from a power-down CPU_SUSPEND,
 * x0 = context id. Both set the CPU's stack (the board's dense CPU index from MPIDR: MAX_CPUS and
 * CLUSTER_SHIFT come from board::Selected) and the EL2 vectors. The macros come from
 * firmware_runtime::asm_macros! (included before this file).
 */
.macro set_stack
    cpu_index_or_park x9, x10, x11, {MAX_CPUS}, {CLUSTER_SHIFT}, payload_park
    set_stack_top x9, 0x4000, x10, x11
    ldr     x10, =payload_vectors
    msr     vbar_el2, x10
    isb
.endm

.section .text.entry, "ax"
.global payload_start
payload_start:
    set_stack
    zero_bss
    bl      payload_main
    b       .

.global payload_secondary
payload_secondary:
    set_stack
    bl      secondary_main
    b       .

/* A CPU the board cannot number: never used. */
payload_park:
    wfe
    b       payload_park

/* A CPU parked at EL1 with every interrupt masked, spinning without ever calling anything. */
.global el1_spin
el1_spin:
    msr     daifset, #0xf
    mov     x1, #1
    str     x1, [x0]
    dsb     sy
    sev
    /* YIELD: a no-op on hardware and in multi-threaded QEMU; under -icount it ends this vCPU's turn. */
0:  add     x2, x2, #1
    yield
    b       0b

.balign 0x800
payload_vectors:
.rept 16
    .balign 0x80
    mrs     x0, esr_el2
    mrs     x1, elr_el2
    b       payload_unexpected_exception
.endr
.ltorg
