//! The DMA scenario (`cargo xtask test-hypervisor`, QEMU with `-M iommu=smmuv3` and
//! `-device edu,dma_mask=0xffffffffffffffff`): the host drives QEMU's `edu` PCI device, whose DMA
//! engine copies between memory and a 4 KiB buffer inside the device, and attacks with it.
//!
//! 1. host page → device → another host page: must work (the host's own memory is reachable by DMA);
//! 2. a page donated to a protected guest (holding the guest's secret pattern) → device → host page:
//!    must move no data (no word of the guest's secret may arrive);
//! 3. host page → device → another page donated to the guest: must move no data (the guest finds its
//!    pattern intact when it checks it, and powers off rather than resetting);
//! 4. host pattern → device → a page of the hypervisor's memory, then that page → device → host
//!    page: the pattern must not come back (DMA can neither write nor read hypervisor memory), and
//!    the hypervisor must keep answering.
//!
//! The device is found by ECAM enumeration of bus 0 (the PCIe host bridge from the device tree), its
//! BAR 0 is placed at the start of the 32-bit MMIO window, and bus mastering is enabled. Without a
//! hypervisor-owned SMMU every one of the attacks succeeds (docs/attacks/smmu.md).

use crate::Parameters;
use crate::calls::hypercall;
use crate::demo::{self, GUEST_MEMORY, PAGE_SIZE, Vm};
use abi::hypercall::{HostHypercall, HypercallOutput, VcpuExit};
use arm_sysregs::el0::accessors::{read_cntfrq_el0, read_cntvct_el0};
use firmware_runtime::hypervisor_map::{GUEST_ENTRY_IPA, HYPERVISOR_BASE, HYPERVISOR_SIZE};
use firmware_runtime::println;

/// QEMU `virt`'s ECAM when the device tree does not say (the high ECAM, 256 buses).
const DEFAULT_ECAM: u64 = 0x40_1000_0000;
/// Where BAR 0 of the `edu` device is placed: the start of QEMU `virt`'s 32-bit PCI MMIO window
/// (PCI and CPU addresses are equal there).
const EDU_BAR: u64 = 0x1000_0000;
/// `edu`'s vendor and device IDs.
const EDU_ID: u32 = 0x11E8_1234;
/// `edu`'s identification register value (version 1.0).
const EDU_IDENTIFICATION: u32 = 0x0100_00ED;
/// The device-side address of `edu`'s DMA buffer.
const EDU_BUFFER: u64 = 0x4_0000;
/// `edu`'s DMA registers: source, destination, byte count, command.
const EDU_DMA_SOURCE: u64 = 0x80;
const EDU_DMA_DESTINATION: u64 = 0x88;
const EDU_DMA_COUNT: u64 = 0x90;
const EDU_DMA_COMMAND: u64 = 0x98;
/// `edu` DMA command bits: start (cleared by the device when done), direction device → memory.
const EDU_DMA_RUN: u64 = 1;
const EDU_DMA_TO_MEMORY: u64 = 2;

/// Host pages this scenario uses (host memory nothing else in the demo touches).
const SCRATCH: u64 = firmware_runtime::hypervisor_map::HOST_BUFFERS - 0x20_0000;
/// The page of the hypervisor's memory the attack targets: its last page, past everything the
/// hypervisor uses, so a successful write does no harm beyond proving the point.
const HYPERVISOR_TARGET: u64 = (HYPERVISOR_BASE + HYPERVISOR_SIZE) as u64 - PAGE_SIZE;
/// Bytes per transfer: all of a page but its last word. QEMU 7.2's `edu` refuses (with a fatal
/// "hardware error") a transfer that ends exactly at the end of its buffer (an off-by-one in its
/// range check), so a whole page cannot be moved at once.
const TRANSFER: u64 = PAGE_SIZE - 8;
/// Words each transfer moves.
const WORDS: usize = (TRANSFER / 8) as usize;

fn scratch(index: u64) -> u64 {
    SCRATCH + index * PAGE_SIZE
}

/// The guest demo's secret value of the word at guest address `ipa` (`guest-demo`'s `secret`): the
/// scenario recognises a leak by it.
fn guest_secret(ipa: u64) -> u64 {
    (ipa ^ 0x5EC2_E700_0000_0000)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

fn fill(page: u64, seed: u64) {
    for word in 0..WORDS as u64 {
        // SAFETY: `page` is one of the scratch pages, host memory this scenario alone uses.
        unsafe { ((page + word * 8) as *mut u64).write_volatile(seed ^ word.wrapping_mul(0x0101)) };
    }
}

fn matches_fill(page: u64, seed: u64) -> usize {
    (0..WORDS as u64)
        // SAFETY: as in `fill`.
        .filter(|word| unsafe { ((page + word * 8) as *const u64).read_volatile() } == seed ^ word.wrapping_mul(0x0101))
        .count()
}

fn mmio_read32(address: u64) -> u32 {
    // SAFETY: `address` is a register of the PCIe ECAM or of the edu BAR, device memory in the host's
    // stage-1 map; reading it has no effect on memory.
    unsafe { (address as *const u32).read_volatile() }
}

fn mmio_write32(address: u64, value: u32) {
    // SAFETY: as in `mmio_read32`; the registers written are the device's own configuration.
    unsafe { (address as *mut u32).write_volatile(value) }
}

fn mmio_read64(address: u64) -> u64 {
    // SAFETY: as in `mmio_read32`.
    unsafe { (address as *const u64).read_volatile() }
}

fn mmio_write64(address: u64, value: u64) {
    // SAFETY: as in `mmio_write32`.
    unsafe { (address as *mut u64).write_volatile(value) }
}

/// The ECAM base of the generic PCIe host bridge in the device tree.
fn ecam_base(device_tree: u64) -> u64 {
    // SAFETY: the hypervisor hands the host the device tree at this address, in host memory the
    // host only reads here; 64 KiB covers QEMU's tree (the reader checks the header's size).
    let bytes = unsafe { core::slice::from_raw_parts(device_tree as *const u8, 0x1_0000) };
    let found = device_tree::DeviceTree::new(bytes).ok().and_then(|tree| {
        let root = tree.root().ok()?;
        root.children().ok()?.flatten().find_map(|node| {
            let compatible = node.property("compatible").ok()??;
            if !compatible.starts_with(b"pci-host-ecam-generic") {
                return None;
            }
            let reg = node.property("reg").ok()??;
            let high = u64::from(u32::from_be_bytes(reg.get(0..4)?.try_into().ok()?));
            let low = u64::from(u32::from_be_bytes(reg.get(4..8)?.try_into().ok()?));
            Some(high << 32 | low)
        })
    });
    found.unwrap_or(DEFAULT_ECAM)
}

/// QEMU's `edu` device, set up for DMA.
struct Edu {
    bar: u64,
}

impl Edu {
    /// Finds `edu` on bus 0, places its BAR 0 and enables memory decoding and bus mastering.
    fn find(ecam: u64) -> Option<Self> {
        let function = (0..32u64)
            .map(|device| ecam + (device << 15))
            .find(|config| mmio_read32(*config) == EDU_ID)?;
        println!(
            "host: dma: edu found at {:02x}.0 (ECAM {ecam:#x})",
            (function - ecam) >> 15
        );
        mmio_write32(function + 0x10, EDU_BAR as u32);
        // Command register: memory space (bit 1) and bus master (bit 2).
        mmio_write32(function + 0x04, 0b110);
        let edu = Self { bar: EDU_BAR };
        (mmio_read32(edu.bar) == EDU_IDENTIFICATION).then_some(edu)
    }

    /// Runs one DMA transfer of [`TRANSFER`] bytes and waits for it (the device runs it from a timer, 100 ms of
    /// virtual time later). Returns false when the device did not finish within 2 s.
    fn transfer(&self, source: u64, destination: u64, to_memory: bool) -> bool {
        mmio_write64(self.bar + EDU_DMA_SOURCE, source);
        mmio_write64(self.bar + EDU_DMA_DESTINATION, destination);
        mmio_write64(self.bar + EDU_DMA_COUNT, TRANSFER);
        let direction = if to_memory { EDU_DMA_TO_MEMORY } else { 0 };
        mmio_write64(self.bar + EDU_DMA_COMMAND, EDU_DMA_RUN | direction);
        let frequency = u64::from(read_cntfrq_el0().clockfreq());
        let start = read_cntvct_el0().bits();
        while mmio_read64(self.bar + EDU_DMA_COMMAND) & EDU_DMA_RUN != 0 {
            if read_cntvct_el0().bits() - start > 2 * frequency {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Memory page → the device's buffer.
    fn read_page(&self, page: u64) -> bool {
        self.transfer(page, EDU_BUFFER, false)
    }

    /// The device's buffer → memory page.
    fn write_page(&self, page: u64) -> bool {
        self.transfer(EDU_BUFFER, page, true)
    }
}

/// Words of `page` (host address) that equal the guest's secret for guest page `ipa`.
fn secret_words(page: u64, ipa: u64) -> usize {
    (0..WORDS as u64)
        .filter(|word| {
            // SAFETY: `page` is a scratch page, host memory this scenario alone uses.
            let value = unsafe { ((page + word * 8) as *const u64).read_volatile() };
            value == guest_secret(ipa + word * 8)
        })
        .count()
}

/// The scenario; returns whether DMA reached exactly the host's own memory.
pub fn run(parameters: Parameters, device_tree: u64) -> bool {
    let ecam = ecam_base(device_tree);
    let Some(edu) = Edu::find(ecam) else {
        println!("host: FAIL: dma: no edu device on PCIe bus 0 (ECAM {ecam:#x})");
        return false;
    };
    let mut finished = true;

    // 1. The host's own pages.
    fill(scratch(0), 0xA1A1_0000_0000_0000);
    fill(scratch(1), 0);
    finished &= edu.read_page(scratch(0)) && edu.write_page(scratch(1));
    let own = matches_fill(scratch(1), 0xA1A1_0000_0000_0000);
    println!("host: dma: host page -> device -> host page: {own} of {WORDS} words arrived");

    // 2 and 3 need a guest whose secret pattern is in place: run it to its MEM_SHARE exit.
    let vm = match demo::create(parameters.guest_pages, parameters.image_size, false) {
        Ok(vm) => vm,
        Err(error) => {
            println!("host: FAIL: dma: creating the VM: {error:?}");
            return false;
        }
    };
    if !matches!(demo::run_once(&vm), Ok(VcpuExit::MemoryShared { .. })) {
        println!("host: FAIL: dma: the guest did not share its report page");
        return false;
    }
    // Two data pages in the middle of the guest's memory (past its image, below its report page).
    let victim_read = vm.pages / 2;
    let victim_write = vm.pages / 2 + 1;
    let host_address = |page: u64| GUEST_MEMORY + page * PAGE_SIZE;
    let guest_address = |page: u64| GUEST_ENTRY_IPA + page * PAGE_SIZE;

    fill(scratch(2), 0xB2B2_0000_0000_0000);
    fill(scratch(3), 0);
    finished &= edu.read_page(scratch(2));
    finished &= edu.read_page(host_address(victim_read)) && edu.write_page(scratch(3));
    let leaked = secret_words(scratch(3), guest_address(victim_read));
    println!(
        "host: dma: donated guest page -> device -> host page: {leaked} of {WORDS} words of the guest's secret leaked"
    );

    fill(scratch(4), 0xC3C3_0000_0000_0000);
    finished &= edu.read_page(scratch(4)) && edu.write_page(host_address(victim_write));

    // 4. The hypervisor's memory: write a pattern, overwrite the device's buffer, read back.
    fill(scratch(5), 0xD4D4_0000_0000_0000);
    fill(scratch(6), 0xE5E5_0000_0000_0000);
    fill(scratch(7), 0);
    finished &= edu.read_page(scratch(5)) && edu.write_page(HYPERVISOR_TARGET);
    finished &= edu.read_page(scratch(6));
    finished &= edu.read_page(HYPERVISOR_TARGET) && edu.write_page(scratch(7));
    let round_trip = matches_fill(scratch(7), 0xD4D4_0000_0000_0000);
    println!(
        "host: dma: host pattern -> device -> hypervisor page -> device -> host page: {round_trip} of {WORDS} words came back"
    );

    let intact = finish_guest(&vm);
    let alive = matches!(
        hypercall(HostHypercall::QueryStatus),
        Ok(HypercallOutput::Status(_))
    );
    if let Err(error) = demo::destroy(&vm) {
        println!("host: FAIL: dma: tearing the VM down: {error:?}");
        return false;
    }
    println!("host: === summary ===");
    println!(
        "host: dma: own pages reachable: {}",
        if own == WORDS { "yes" } else { "NO" }
    );
    println!(
        "host: dma: guest secret read by DMA: {}",
        if leaked == 0 { "no" } else { "YES" }
    );
    println!(
        "host: dma: guest page written by DMA: {}",
        if intact {
            "no (guest pattern intact)"
        } else {
            "YES (guest pattern corrupted)"
        }
    );
    println!(
        "host: dma: hypervisor memory written and read by DMA: {}",
        if round_trip == 0 { "no" } else { "YES" }
    );
    println!(
        "host: dma: hypervisor alive: {}",
        if alive { "yes" } else { "NO" }
    );
    if !finished {
        println!("host: FAIL: dma: a transfer did not finish");
    }
    finished && own == WORDS && leaked == 0 && intact && round_trip == 0 && alive
}

/// Runs the guest to its end: true when it found its pattern intact (`SYSTEM_OFF`).
fn finish_guest(vm: &Vm) -> bool {
    loop {
        match demo::run_once(vm) {
            Ok(VcpuExit::MemoryShared { .. } | VcpuExit::MemoryUnshared { .. }) => {}
            Ok(VcpuExit::SystemOff) => return true,
            other => {
                println!("host: dma: the guest ended with {other:?}");
                return false;
            }
        }
    }
}
