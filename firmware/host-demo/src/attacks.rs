//! The attack suite: a hostile host that goes around the hypercall interface, through every other path
//! it has to memory and to the guest's state, and checks that each one is refused with nothing lost.
//!
//! Each attack prints one line `host: attack: NAME: refused (...)` or `host: attack: NAME: HOLE (...)`;
//! the scenario passes only when every attack is refused, the guest finds its secret pattern intact
//! at the end, and the hypervisor still creates, runs and reclaims a VM afterwards.
//!
//! | attack | the path | what a hole looks like |
//! |---|---|---|
//! | world switch | EL1/EL0 registers left behind by `VCPU_RUN` (pointer-authentication key, `TPIDR2_EL0`, virtual timer, `CSSELR_EL1`) | the guest sees the host's values, or the host sees the guest's |
//! | PMU | the host's counter of EL1 instructions across `VCPU_RUN` | it counts the guest's instructions |
//! | fw_cfg DMA | QEMU's fw_cfg DMA engine zero-fills a donated guest page | the guest's data changes |
//! | ITS | the GIC's ITS writes a device-table entry into a donated guest page (`MAPD`) | the guest's data changes |
//! | LPI tables | `GICR_PROPBASER` pointed at a donated page | the redistributor accepts it |
//! | virtio-mmio | the transports (a virtio-rng device sits behind one): no IOMMU in front of them | the host finds and can program a DMA master |
//! | hint-bit SMC | the erratum call with the SVE hint bit (`0x8101_0010`) | the rendezvous runs for the host |
//! | stage-2 pool | faults in 1,536 2 MiB regions with no device | the hypervisor runs out of table pages |
//! | high DRAM | a page above 4 GiB given to a guest and reclaimed | the hypervisor cannot zero it |
//! | EL3 trap | a read of `ICC_IAR0_EL1` (traps to EL3) | the machine stops |
//!
//! The PMU attack needs `-icount` (QEMU counts `INST_RETIRED` only then); `cargo xtask test` runs the
//! scenario that way.

use crate::calls::{hypercall, smc};
use crate::demo::{self, GUEST_MEMORY, PAGE_SIZE, Vm};
use crate::{ABORTS, EXPECT_UNDEFINED, Parameters, UNDEFINED};
use abi::hypercall::{Gfn, HostHypercall, HypercallFailure, Pfn, VcpuExit};
use arm_sysregs::aarch32::registers::Pmcntenset;
use arm_sysregs::el0::accessors::{read_pmcr_el0, write_pmcr_el0};
use arm_sysregs::el0::registers::PmcrEl0;
use core::sync::atomic::Ordering;
use firmware_runtime::hypervisor_map::GUEST_ENTRY_IPA;
use firmware_runtime::memory_map::GICR_BASE;
use firmware_runtime::println;
use firmware_runtime::sysreg::{
    Pmevtyper, isb, read_pmevcntr0_el0, read_switched_registers, write_pmcntenset_el0,
    write_pmevcntr0_el0, write_pmevtyper0_el0, write_switched_registers,
};

/// QEMU `virt`'s fw_cfg (MMIO interface; the DMA address register is at +0x10).
const FW_CFG_BASE: u64 = 0x0902_0000;
/// QEMU `virt`'s GICv3 ITS (control frame).
const GITS_BASE: u64 = 0x0808_0000;
/// A host page for DMA descriptors and the ITS command queue (never donated).
const SCRATCH: u64 = firmware_runtime::hypervisor_map::HOST_BUFFERS - 0x4_0000;
/// The host's values in the registers the world switch must switch (pointer-authentication key A
/// low half, `TPIDR2_EL0`, `CNTV_CVAL_EL0`, `CNTV_CTL_EL0` with the interrupt masked, `CSSELR_EL1`).
const HOST_MARKERS: [u64; 5] = [
    0x486F_7374_4B65_7921,
    0x486F_7374_5450_4932,
    0x0000_7777_0000_0001,
    0b10,
    2,
];
/// The values the guest writes into the same registers (`guest-demo`'s `GUEST_MARKERS`).
const GUEST_MARKERS: [u64; 5] = [
    0x4775_6573_744B_6579,
    0x4775_6573_7454_5032,
    0x0000_6666_0000_0002,
    0,
    1,
];
const REGISTER_NAMES: [&str; 5] = [
    "APIAKeyLo_EL1",
    "TPIDR2_EL0",
    "CNTV_CVAL_EL0",
    "CNTV_CTL_EL0",
    "CSSELR_EL1",
];

/// The outcome of one attack.
enum Verdict {
    /// The hypervisor (or monitor) stopped it; the text says how.
    Refused(&'static str),
    /// It worked: the promise is broken.
    Hole,
}

fn report(name: &str, verdict: Verdict, detail: core::fmt::Arguments) -> bool {
    match verdict {
        Verdict::Refused(how) => {
            println!("host: attack: {name}: refused ({how}; {detail})");
            true
        }
        Verdict::Hole => {
            println!("host: attack: {name}: HOLE ({detail})");
            false
        }
    }
}

/// Runs `access`; returns whether it took an injected external abort.
fn aborted(access: impl FnOnce()) -> bool {
    let before = ABORTS.load(Ordering::Relaxed);
    access();
    ABORTS.load(Ordering::Relaxed) != before
}

fn write32(address: u64, value: u32) {
    // SAFETY: a device register the host's stage-1 maps as device memory; when the hypervisor does
    // not let the host reach it, the access takes an abort that the host's handler steps over.
    unsafe { (address as *mut u32).write_volatile(value) };
}

fn write64(address: u64, value: u64) {
    // SAFETY: as for `write32`.
    unsafe { (address as *mut u64).write_volatile(value) };
}

fn read64(address: u64) -> u64 {
    // SAFETY: as for `write32`; an aborted read yields whatever the register held (not used then).
    unsafe { (address as *const u64).read_volatile() }
}

/// Sets the host's markers in the registers the world switch must switch.
fn set_host_markers() {
    // SAFETY: these are the host's own EL1/EL0 registers; the demo host uses none of them otherwise
    // (pointer authentication is off, the virtual timer stays disabled, its interrupt masked).
    unsafe { write_switched_registers(HOST_MARKERS) };
}

fn host_registers() -> [u64; 5] {
    read_switched_registers()
}

/// Counter 0 counts `INST_RETIRED` at EL1 only (not EL0, not EL2).
fn start_el1_instruction_counter() {
    // U set: not EL0; NSH clear: not EL2; M different from P: not EL3.
    write_pmevtyper0_el0(Pmevtyper::new(
        Pmevtyper::INST_RETIRED,
        Pmevtyper::U | Pmevtyper::M,
    ));
    write_pmevcntr0_el0(0);
    write_pmcntenset_el0(Pmcntenset::P0);
    write_pmcr_el0(read_pmcr_el0() | PmcrEl0::E);
    isb();
}

fn el1_instructions() -> u64 {
    read_pmevcntr0_el0()
}

/// Whether the counter counts at all (QEMU counts `INST_RETIRED` only under `-icount`): 10,000
/// iterations of a two-instruction loop must show.
fn counter_counts() -> bool {
    let before = el1_instructions();
    // Hand-written on purpose: a loop of exactly 20,000 instructions.
    // SAFETY: a register-only loop.
    unsafe {
        core::arch::asm!("1: subs {n}, {n}, #1", "b.ne 1b", n = inout(reg) 10_000u64 => _, options(nomem, nostack))
    };
    el1_instructions().wrapping_sub(before) >= 20_000
}

/// Runs the guest until it shares its report page; returns the page's host address, and the EL1
/// instructions the host's counter saw during the runs.
fn run_to_report(vm: &Vm) -> Option<(u64, u64)> {
    let mut counted = 0;
    for _ in 0..8 {
        let before = el1_instructions();
        let exit = demo::run_once(vm);
        counted += el1_instructions().wrapping_sub(before);
        match exit {
            Ok(VcpuExit::MemoryShared { ipa }) => {
                return Some((GUEST_MEMORY + (ipa - GUEST_ENTRY_IPA), counted));
            }
            Ok(VcpuExit::Interrupted) => {}
            other => {
                println!("host: attack: FAIL: guest exit {other:?} before its report");
                return None;
            }
        }
    }
    None
}

/// The world-switch and PMU attacks: registers both ways across `VCPU_RUN`, and the host's counter.
fn world_switch(vm: &Vm) -> Option<(bool, u64)> {
    set_host_markers();
    start_el1_instruction_counter();
    if !counter_counts() {
        println!("host: attack: FAIL: the PMU does not count INST_RETIRED (run under -icount)");
        return None;
    }
    let (report_page, counted) = run_to_report(vm)?;
    let page = report_page as *const u64;
    let mut seen_by_guest = [0; 5];
    for (index, value) in seen_by_guest.iter_mut().enumerate() {
        // SAFETY: the guest shares its report page with the host now (MEM_SHARE exit); read only.
        *value = unsafe { page.add(4 + index).read_volatile() };
    }
    let seen_by_host = host_registers();
    let mut passed = true;
    for index in 0..5 {
        let leaked_in = seen_by_guest[index] == HOST_MARKERS[index];
        let leaked_out = seen_by_host[index] == GUEST_MARKERS[index];
        let verdict = if leaked_in || leaked_out {
            Verdict::Hole
        } else {
            Verdict::Refused("switched")
        };
        passed &= report(
            &alloc_name("world switch", REGISTER_NAMES[index]),
            verdict,
            format_args!(
                "guest saw {:#x} (host wrote {:#x}), host sees {:#x} after the run (guest wrote {:#x})",
                seen_by_guest[index],
                HOST_MARKERS[index],
                seen_by_host[index],
                GUEST_MARKERS[index]
            ),
        );
    }
    Some((passed, counted))
}

/// A name of two parts, for `report` (no heap: a fixed buffer).
fn alloc_name(first: &str, second: &str) -> NameBuffer {
    let mut name = NameBuffer {
        bytes: [0; 64],
        length: 0,
    };
    for byte in first.bytes().chain(*b" ").chain(second.bytes()) {
        if name.length < name.bytes.len() {
            name.bytes[name.length] = byte;
            name.length += 1;
        }
    }
    name
}

struct NameBuffer {
    bytes: [u8; 64],
    length: usize,
}

impl core::ops::Deref for NameBuffer {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("?")
    }
}

/// fw_cfg's DMA engine: select an item that does not exist and read 16 bytes into a donated guest
/// page, which QEMU fills with zeroes.
fn fw_cfg_dma(target: u64) -> bool {
    let descriptor = SCRATCH as *mut u64;
    // Control: item 0x3FFF (none) in bits 31:16, SELECT (0x08), READ (0x02); length 16; address.
    // SAFETY: the scratch page is host memory no other code uses; the descriptor is big-endian.
    unsafe {
        descriptor.write_volatile(
            u64::from(((0x3FFF_u32 << 16) | 0x08 | 0x02).to_be())
                | (u64::from(16_u32.to_be()) << 32),
        );
        descriptor.add(1).write_volatile(target.to_be());
    }
    crate::mmu::clean(SCRATCH..SCRATCH + 16);
    // The 64-bit address register is big-endian too: writing it starts the transfer.
    let refused = aborted(|| write64(FW_CFG_BASE + 0x10, SCRATCH.swap_bytes()));
    report(
        "fw_cfg DMA into a donated guest page",
        if refused {
            Verdict::Refused("external abort on the fw_cfg registers")
        } else {
            Verdict::Hole
        },
        format_args!("target {target:#x}; the guest checks its data at the end"),
    )
}

/// The ITS writes a device-table entry (`MAPD` of device 0) into a donated guest page.
fn its_device_table(target: u64) -> bool {
    let queue = SCRATCH + PAGE_SIZE;
    let itt = SCRATCH + 2 * PAGE_SIZE;
    let command = queue as *mut u64;
    // MAPD: DW0 command 0x08, device 0; DW1 size (2 bits of event id); DW2 valid, ITT address.
    // SAFETY: the command queue page is host memory no other code uses.
    unsafe {
        command.write_volatile(0x08);
        command.add(1).write_volatile(1);
        command.add(2).write_volatile((1 << 63) | itt);
        command.add(3).write_volatile(0);
    }
    crate::mmu::clean(queue..queue + 32);
    let refused = aborted(|| {
        // GITS_CTLR = 0 (disabled, so the tables can be set); GITS_BASER0 (device table): valid, one
        // 4 KiB page at `target`; GITS_CBASER: valid, one page; enable; GITS_CWRITER = one command.
        write32(GITS_BASE, 0);
        let baser = read64(GITS_BASE + 0x100);
        write64(
            GITS_BASE + 0x100,
            (1 << 63) | (baser & (0x7 << 56)) | target,
        );
        write64(GITS_BASE + 0x80, (1 << 63) | queue);
        write32(GITS_BASE, 1);
        write64(GITS_BASE + 0x88, 0x20);
    });
    report(
        "ITS MAPD into a donated guest page",
        if refused {
            Verdict::Refused("external abort on the ITS registers")
        } else {
            Verdict::Hole
        },
        format_args!("device table at {target:#x}; the guest checks its data at the end"),
    )
}

/// `GICR_PROPBASER` of CPU 0's redistributor pointed at a donated page: the redistributor must not
/// take it (LPIs are not offered to the host).
fn lpi_property_table(target: u64) -> bool {
    let propbaser = GICR_BASE as u64 + 0x70;
    let pendbaser = GICR_BASE as u64 + 0x78;
    let mut read_back = (0, 0);
    let faulted = aborted(|| {
        write64(propbaser, target | 0xF);
        write64(pendbaser, target);
        read_back = (read64(propbaser), read64(pendbaser));
    });
    let accepted = !faulted && (read_back.0 & !0xFFF == target || read_back.1 & !0xFFF == target);
    report(
        "GICR_PROPBASER/PENDBASER at a donated page",
        if accepted {
            Verdict::Hole
        } else {
            Verdict::Refused("the hypervisor keeps LPIs off")
        },
        format_args!(
            "read back {:#x} / {:#x}{}",
            read_back.0,
            read_back.1,
            if faulted { " (aborted)" } else { "" }
        ),
    )
}

/// QEMU `virt`'s 32 virtio-mmio transports (0x200 apart from `0x0A00_0000`): the attack suite runs
/// with a virtio-rng device behind one. A device there reads and writes its queues wherever the
/// driver points them, with nothing in between: reaching its registers is reaching a DMA master.
fn virtio_mmio() -> bool {
    const VIRTIO_MMIO_BASE: u64 = 0x0A00_0000;
    /// "virt", little-endian.
    const MAGIC: u32 = 0x7472_6976;
    let mut found = None;
    let mut aborts = 0;
    for transport in 0..32 {
        let base = VIRTIO_MMIO_BASE + transport * 0x200;
        let mut registers = (0, 0);
        if aborted(|| {
            // SAFETY: as for `write32`: device registers, or an abort the handler steps over.
            registers = unsafe {
                (
                    ((base) as *const u32).read_volatile(),
                    ((base + 8) as *const u32).read_volatile(),
                )
            };
        }) {
            aborts += 1;
        } else if registers.0 == MAGIC && registers.1 != 0 {
            found = Some((base, registers.1));
        }
    }
    report(
        "virtio-mmio device (a DMA master without an IOMMU)",
        match found {
            None if aborts == 32 => Verdict::Refused("virtio-mmio withheld"),
            _ => Verdict::Hole,
        },
        format_args!(
            "{aborts} of 32 transports aborted; device found: {}",
            match found {
                Some((base, device)) => DeviceFound(base, device),
                None => DeviceFound(0, 0),
            }
        ),
    )
}

/// A virtio device's transport and ID, for the report (0: none).
struct DeviceFound(u64, u32);

impl core::fmt::Display for DeviceFound {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        if self.1 == 0 {
            formatter.write_str("none")
        } else {
            write!(formatter, "virtio device {} at {:#x}", self.1, self.0)
        }
    }
}

/// The erratum call with the SVE hint bit (bit 16): the same call to the monitor.
fn hint_bit_smc() -> bool {
    let answer = smc(0x8101_0010, [0; 3])[0] as i64;
    report(
        "erratum call with the SVE hint bit (0x81010010)",
        if answer == -1 {
            Verdict::Refused("NOT_SUPPORTED")
        } else {
            Verdict::Hole
        },
        format_args!("answered {answer}"),
    )
}

/// Touches one word in each 2 MiB of address space where no device is, from 8 to 11 GiB (1,536
/// regions): a hypervisor that maps whatever the host touches needs a table page for each, and runs
/// out.
/// Then checks that the hypervisor can still make an ownership change that needs a new table page
/// (a VM with one page off a 2 MiB boundary).
fn stage2_pool(parameters: Parameters) -> bool {
    let regions = ((8_u64 << 30)..(11_u64 << 30)).step_by(2 << 20);
    let mut touched = 0;
    let mut aborts = 0;
    for address in regions {
        if aborted(|| {
            let _ = read64(address);
        }) {
            aborts += 1;
        }
        touched += 1;
    }
    let working = (|| -> Result<(), HypercallFailure> {
        let vm = demo::create(512, parameters.image_size, false)?;
        // One more page, 2 MiB past the first: the host's block there must be split.
        let page = GUEST_MEMORY + 0x40_1000;
        hypercall(HostHypercall::DonateGuest {
            vm: vm.handle,
            pfn: Pfn(page / PAGE_SIZE),
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + 0x1000),
            pages: 1,
        })?;
        hypercall(HostHypercall::VmTeardown { vm: vm.handle })?;
        hypercall(HostHypercall::ReclaimGuestPages {
            vm: vm.handle,
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + 0x1000),
            pages: 1,
        })?;
        hypercall(HostHypercall::ReclaimGuestPages {
            vm: vm.handle,
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE),
            pages: vm.pages,
        })?;
        hypercall(HostHypercall::VmFree { vm: vm.handle })?;
        Ok(())
    })();
    if let Err(error) = working {
        println!("host: attack: a VM after the faults: {error:?}");
    }
    report(
        "stage-2 pool exhaustion by device faults",
        if working.is_ok() && aborts == touched {
            Verdict::Refused("unknown devices abort without a table")
        } else {
            Verdict::Hole
        },
        format_args!(
            "{aborts} of {touched} accesses aborted; a donation needing a new table afterwards: {}",
            if working.is_ok() { "works" } else { "FAILED" }
        ),
    )
}

/// A page above 4 GiB: written by the host, donated to a VM, reclaimed: it must come back zeroed.
fn high_memory(page: u64) -> bool {
    // SAFETY: a host page above 4 GiB (the host's stage-1 maps DRAM up to 8 GiB); nothing else uses it.
    unsafe { (page as *mut u64).write_volatile(0x4869_6768_4D65_6D21) };
    crate::mmu::clean(page..page + 64);
    let outcome = (|| -> Result<bool, HypercallFailure> {
        let vm = demo::create(512, 0, false)?;
        hypercall(HostHypercall::DonateGuest {
            vm: vm.handle,
            pfn: Pfn(page / PAGE_SIZE),
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + 0x10_0000),
            pages: 1,
        })?;
        let touched = aborted(|| demo::touch(page, false));
        hypercall(HostHypercall::VmTeardown { vm: vm.handle })?;
        hypercall(HostHypercall::ReclaimGuestPages {
            vm: vm.handle,
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + 0x10_0000),
            pages: 1,
        })?;
        let mut done = 0;
        while done < vm.pages {
            hypercall(HostHypercall::ReclaimGuestPages {
                vm: vm.handle,
                gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + done),
                pages: 512.min(vm.pages - done),
            })?;
            done += 512;
        }
        hypercall(HostHypercall::VmFree { vm: vm.handle })?;
        Ok(touched && read64(page) == 0)
    })();
    report(
        "a page above 4 GiB donated and reclaimed",
        if outcome == Ok(true) {
            Verdict::Refused("aborted while donated, zeroed when reclaimed")
        } else {
            Verdict::Hole
        },
        format_args!("page {page:#x}: {outcome:?}"),
    )
}

/// `ICC_IAR0_EL1` from the Non-secure world traps to EL3: the host must get an undefined-instruction
/// exception, and the machine must go on.
fn el3_trap() -> bool {
    let before = UNDEFINED.load(Ordering::Relaxed);
    EXPECT_UNDEFINED.store(true, Ordering::Relaxed);
    // Hand-written on purpose: the attack is this one instruction, which the handler steps over (an
    // accessor's read, its result unused, could be dropped or moved by the compiler).
    // SAFETY: reading ICC_IAR0_EL1 from the Non-secure world traps to EL3, which must answer with an
    // undefined-instruction exception; the host's handler counts it and steps over the instruction.
    unsafe { core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) _, options(nostack)) };
    EXPECT_UNDEFINED.store(false, Ordering::Relaxed);
    let undefined = UNDEFINED.load(Ordering::Relaxed) != before;
    report(
        "ICC_IAR0_EL1 read (traps to EL3)",
        if undefined {
            Verdict::Refused("undefined instruction injected into the host")
        } else {
            Verdict::Hole
        },
        format_args!("the host went on"),
    )
}

/// The attack suite; returns whether every attack was refused and nothing was lost.
pub fn run(parameters: Parameters) -> bool {
    let Some(status) = demo::status() else {
        return false;
    };
    if !status.is_enabled() {
        println!("host: attack: FAIL: protected mode is off ({status})");
        return false;
    }
    let vm = match demo::create(parameters.guest_pages, parameters.image_size, false) {
        Ok(vm) => vm,
        Err(error) => {
            println!("host: attack: FAIL: creating the VM: {error:?}");
            return false;
        }
    };
    let Some((mut passed, counted)) = world_switch(&vm) else {
        return false;
    };
    passed &= report(
        "PMU counting across VCPU_RUN",
        if counted < 1_000 {
            Verdict::Refused("the host's counters stop while the guest runs")
        } else {
            Verdict::Hole
        },
        format_args!("the host's EL1 instruction counter advanced by {counted} during the runs"),
    );
    // A data page in the middle of the guest's secret pattern.
    let target = GUEST_MEMORY + (vm.pages / 2) * PAGE_SIZE;
    passed &= fw_cfg_dma(target);
    passed &= its_device_table(target + PAGE_SIZE);
    passed &= lpi_property_table(target + 2 * PAGE_SIZE);
    passed &= virtio_mmio();
    passed &= hint_bit_smc();
    // The guest checks every word of its pattern, then powers off (SYSTEM_RESET if anything changed).
    let mut intact = false;
    for _ in 0..8 {
        match demo::run_once(&vm) {
            Ok(VcpuExit::MemoryUnshared { .. } | VcpuExit::Interrupted) => {}
            Ok(VcpuExit::SystemOff) => {
                intact = true;
                break;
            }
            other => {
                println!("host: attack: guest exit {other:?}");
                break;
            }
        }
    }
    println!(
        "host: attack: guest data intact after the attacks: {}",
        if intact { "yes" } else { "NO" }
    );
    let destroyed = demo::destroy(&vm);
    if let Err(error) = destroyed {
        println!("host: attack: FAIL: tearing the VM down: {error:?}");
    }
    passed &= intact && destroyed.is_ok();
    passed &= stage2_pool(parameters);
    if parameters.high_page != 0 {
        passed &= high_memory(parameters.high_page);
    }
    passed &= el3_trap();
    println!(
        "host: attack: summary: {}",
        if passed {
            "every attack refused, nothing lost"
        } else {
            "HOLES FOUND"
        }
    );
    passed
}
