/*
 * Reset and warm-boot entry of the monitor. Every CPU starts at `monitor_reset` in Secure flash, at
 * EL3 with the MMU off. CPU 0 copies the image to its link address in Secure RAM, clears .bss and
 * continues there in Rust (`primary_main`). The other CPUs wait in flash until CPU 0 publishes
 * RELEASE_MAGIC in `secondaries_release`, then continue in Secure RAM (`secondary_main`), where the
 * pen is. Nothing but the copy loop and this wait runs from flash.
 */

/* Index of this CPU, or park it: see `cpu_index_or_park` in firmware_runtime::asm_macros!. */
.macro monitor_cpu_index reg, scratch1, scratch2
    cpu_index_or_park \reg, \scratch1, \scratch2, {MAX_CPUS}, {CLUSTER_SHIFT}, monitor_park
.endm

/*
 * TPIDR_EL3 = index; sp = top of the stack of CPU `index` (SP_EL3: SPSel is 1 out of reset and in
 * our handlers).
 */
.macro set_cpu_stack index, scratch1, scratch2
    msr     tpidr_el3, \index
    set_stack_top \index, {STACK_SIZE}, \scratch1, \scratch2
.endm

/* x0 = x19 = this CPU's index, empty stack, vectors installed: calls `function` (in Secure RAM). */
.macro enter_rust function
    monitor_cpu_index x19, x0, x1
    set_cpu_stack x19, x0, x1
    adr     x0, monitor_vectors
    msr     vbar_el3, x0
    isb
    mov     x0, x19
    bl      \function
.endm

.section .text.reset, "ax"
.global monitor_reset
monitor_reset:
    /* Known EL3 state: MMU and data cache off, instruction cache on, little endian. */
    ldr     x0, ={SCTLR_EL3_BOOT}
    msr     sctlr_el3, x0
    isb
    monitor_cpu_index x19, x0, x1
    cbnz    x19, wait_for_release

    /* CPU 0: copy the image from where it runs (flash) to where it is linked (Secure RAM). */
    adr     x0, monitor_reset
    ldr     x1, =__image_start
    ldr     x2, =__image_end
    cmp     x0, x1
    b.eq    1f
0:  ldp     x3, x4, [x0], #16
    stp     x3, x4, [x1], #16
    cmp     x1, x2
    b.lo    0b
1:  ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  stp     xzr, xzr, [x1], #16
    cmp     x1, x2
    b.lo    2b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    ldr     x0, =primary_ram_entry
    br      x0

wait_for_release:
    ldr     x1, =secondaries_release
    ldr     x3, ={RELEASE_MAGIC}
0:  wfe
    ldr     x2, [x1]
    cmp     x2, x3
    b.ne    0b
    ldr     x0, =secondary_ram_entry
    br      x0

.global monitor_park
monitor_park:
    wfi
    b       monitor_park

.ltorg

.section .text, "ax"
primary_ram_entry:
    enter_rust primary_main
    b       monitor_park

/*
 * Entry of a CPU that is (again) in the pen: after its release at boot, after CPU_OFF and after a
 * power-down suspend. The stack starts empty every time.
 */
.global secondary_ram_entry
secondary_ram_entry:
    enter_rust secondary_main
    b       monitor_park

/*
 * enter_non_secure(entry, argument, spsr): leaves the monitor for a lower exception level with an empty
 * EL3 stack, x0 = argument and every other general-purpose register zero.
 */
.global enter_non_secure
enter_non_secure:
    msr     elr_el3, x0
    msr     spsr_el3, x2
    mov     x20, x1
    monitor_cpu_index x19, x0, x1
    set_cpu_stack x19, x0, x1
    mov     x0, x20
    zero_x1_to_x30
    eret
.ltorg
