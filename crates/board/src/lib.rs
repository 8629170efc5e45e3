//! The facts of the board the firmware runs on, behind one trait: the memory map, the devices the
//! firmware drives (GIC, console UART, power-control GPIO, SMMU), the ranges the host may never map,
//! and the CPU numbering (`MPIDR_EL1` to a dense index and back).
//!
//! Why a trait of constants: the monitor (EL3), the hypervisor (EL2), their payloads and `xtask`
//! must agree on every address; with one [`Platform`] implementation per board they read the same
//! values, and a further board (FVP, silicon) is one more implementation plus a cargo feature that
//! makes it [`Selected`], not an edit of every file that knows an address. The
//! trait is constants (and two CPU-numbering functions with default bodies) so that the firmware
//! can use the values where only constants are allowed: array lengths (`[T; Board::MAX_CPUS]`),
//! `global_asm!` operands, statics.
//!
//! Implementations: [`QemuVirt`] (QEMU 7.2 `-M virt,secure=on,virtualization=on,gic-version=3`),
//! [`SbsaRef`] (QEMU 7.2 `-M sbsa-ref`: DRAM at 1 TiB, 8 CPUs per cluster, power through an
//! embedded controller, a device tree without devices) and [`TestPlatform`], a made-up board with other addresses and another CPU numbering, against which
//! the host tests of the code that uses the trait run (a test that still passes with QEMU's
//! constants written in place of the trait's would prove nothing).
//!
//! [`check`] is the self-consistency of a board's map (the hypervisor at the Non-secure entry, the
//! Secure memory forbidden to the host, ...), a `const fn` so that an image can refuse to build for
//! an inconsistent board:
//!
//! ```
//! use board::{Platform, QemuVirt};
//! const _: () = assert!(board::check::<QemuVirt>().is_ok());
//! // MPIDR 0x8000_0103 is Aff1 = 1, Aff0 = 3: index 19 on QEMU `virt` (16 CPUs per cluster),
//! // beyond its 8 CPUs.
//! assert_eq!(QemuVirt::cpu_index(0x8000_0103), None);
//! assert_eq!(QemuVirt::cpu_index(0x8000_0003), Some(3));
//! ```
//!
//! Nothing here touches hardware: `#![forbid(unsafe_code)]`, host-testable, no dependencies.
#![cfg_attr(not(any(test, feature = "build-script")), no_std)]
#![forbid(unsafe_code)]

mod link;
mod qemu_virt;
mod sbsa_ref;
mod test_platform;

use core::ops::Range;

#[cfg(feature = "build-script")]
pub use link::link_image;
pub use link::{Image, MemoryBlock, link_region};
pub use qemu_virt::QemuVirt;
pub use sbsa_ref::SbsaRef;
pub use test_platform::TestPlatform;

/// The board the firmware is built for: the one place that names it. Cargo feature `qemu-virt`
/// (the default) selects [`QemuVirt`], `sbsa-ref` selects [`SbsaRef`] (and wins when both are on,
/// so that `--features board/sbsa-ref` is enough on top of the default). Every image, its build
/// script and its payload libraries read this type; `cargo xtask --machine` picks the feature.
#[cfg(feature = "sbsa-ref")]
pub type Selected = SbsaRef;
/// The board the firmware is built for (see the `sbsa-ref` variant of this item).
#[cfg(not(feature = "sbsa-ref"))]
pub type Selected = QemuVirt;

#[cfg(not(any(feature = "qemu-virt", feature = "sbsa-ref")))]
compile_error!("select a board: cargo feature `qemu-virt` or `sbsa-ref` of the `board` crate");

/// Whether two strings are equal, in a constant: an image compares the board its build script
/// linked it for (`env!("PKVM_BOARD")`) with the board its code reads.
pub const fn same_name(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    let mut index = 0;
    while index < left.len() {
        if left[index] != right[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// A physical address range given as base and size.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Region {
    /// First byte.
    pub base: usize,
    /// Size in bytes.
    pub size: usize,
}

impl Region {
    /// The region of `size` bytes from `base`.
    pub const fn new(base: usize, size: usize) -> Self {
        Self { base, size }
    }

    /// One past the last byte.
    pub const fn end(&self) -> usize {
        self.base + self.size
    }

    /// Whether `address` lies inside.
    pub const fn contains(&self, address: usize) -> bool {
        address >= self.base && address < self.end()
    }

    /// Whether `other` lies wholly inside this region.
    pub const fn covers(&self, other: &Region) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    /// The region as a range of `u64` physical addresses (what `mem_protect` takes).
    pub const fn range(&self) -> Range<u64> {
        self.base as u64..self.end() as u64
    }
}

/// Where the GICv3 is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct GicLayout {
    /// The distributor (`GICD`).
    pub distributor: usize,
    /// The first redistributor frame (`GICR`, RD_base then SGI_base of CPU 0).
    pub redistributors: usize,
    /// Distance between two CPUs' redistributors.
    pub redistributor_stride: usize,
}

/// The console UART (a PL011).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Uart {
    /// Its registers.
    pub base: usize,
    /// Its reference clock.
    pub clock_hz: u32,
}

/// Board power control through a Secure PL061 GPIO: a rising edge on one pin powers the board off,
/// on another resets it (QEMU `virt`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct GpioPower {
    /// The PL061's registers (Secure only).
    pub base: usize,
    /// The pin that powers the board off.
    pub power_off_pin: u32,
    /// The pin that resets the board.
    pub reset_pin: u32,
}

/// Board power control through one Secure command register: writing one value powers the board off,
/// another resets it (the embedded controller of QEMU `sbsa-ref`, `hw/misc/sbsa_ec.c`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CommandRegisterPower {
    /// The device's registers (Secure only); the command register is the first word.
    pub base: usize,
    /// The value that powers the board off.
    pub power_off: u32,
    /// The value that resets the board.
    pub reset: u32,
}

/// How the monitor powers the board off and resets it (`SYSTEM_OFF`, `SYSTEM_RESET`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PowerControl {
    /// Pins of a Secure PL061 GPIO.
    Gpio(GpioPower),
    /// A Secure command register.
    CommandRegister(CommandRegisterPower),
}

impl PowerControl {
    /// The 4 KiB frame of the device's registers (Secure only: forbidden to the host).
    pub const fn registers(&self) -> Region {
        let base = match self {
            Self::Gpio(gpio) => gpio.base,
            Self::CommandRegister(register) => register.base,
        };
        Region::new(base, 0x1000)
    }
}

/// The affinity bits of `MPIDR_EL1` (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// Most CPUs of one cluster an `ICC_SGI0R_EL1` target list can name (Aff0 0 to 15).
pub const SGI_TARGET_LIST_CPUS: usize = 16;

/// A CPU numbering by clusters: the dense index is `Aff1 << cluster_shift | Aff0`, Aff2 and Aff3 are
/// 0, Aff0 is below `1 << cluster_shift`. QEMU `virt` with a GICv3 has 16 CPUs per cluster (shift
/// 4); a board of 4-core clusters has shift 2. The entry code of the monitor and the hypervisor
/// computes the same index in assembly (`firmware_runtime::asm_macros!`, from [`Self::cluster_shift`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ClusterNumbering {
    /// log2 of the number of CPUs per Aff1 cluster.
    pub cluster_shift: u32,
}

impl ClusterNumbering {
    /// CPUs per cluster.
    pub const fn cpus_per_cluster(&self) -> usize {
        1 << self.cluster_shift
    }

    /// The dense index of the CPU whose `MPIDR_EL1` is `mpidr` (only the affinity fields are looked
    /// at), or `None` when no such CPU exists with at most `max_cpus` CPUs.
    pub const fn index(&self, mpidr: u64, max_cpus: usize) -> Option<usize> {
        let affinity = mpidr & MPIDR_AFFINITY_MASK;
        let aff0 = affinity & 0xFF;
        let aff1 = (affinity >> 8) & 0xFF;
        if affinity >> 16 != 0 || aff0 >= 1 << self.cluster_shift {
            return None;
        }
        // At most 0xFF << 7 | 0x7F: fits any usize of 16 bits or more.
        let index = ((aff1 << self.cluster_shift) | aff0) as usize;
        if index < max_cpus { Some(index) } else { None }
    }

    /// The `MPIDR_EL1` affinity value of the CPU with dense index `index`.
    pub const fn mpidr(&self, index: usize) -> u64 {
        let index = index as u64;
        ((index >> self.cluster_shift) << 8) | (index & ((1 << self.cluster_shift) - 1))
    }
}

/// The facts of one board. Addresses are physical; the firmware identity-maps what it uses.
pub trait Platform {
    /// The board's name, for messages.
    const NAME: &'static str;
    /// QEMU's `-M` value for this board, with the options the firmware needs (Secure state, EL2,
    /// GICv3); empty for a board QEMU does not model.
    const QEMU_MACHINE: &'static str;
    /// Further QEMU arguments the board needs to start.
    const QEMU_ARGUMENTS: &'static [&'static str];
    /// Whether the device tree the board hands to firmware already describes the console UART and
    /// the GIC. When it does not, the monitor adds both nodes (from [`Self::UART`] and [`Self::GIC`])
    /// before it passes the tree on, so that the hypervisor's device allowlist and the host see them.
    const DEVICE_TREE_HAS_DEVICES: bool;

    /// Secure flash: where every CPU starts at EL3 (the reset vector).
    const SECURE_FLASH: Region;
    /// Secure RAM: the monitor runs here (nothing Non-secure can write it).
    const SECURE_RAM: Region;
    /// Start of DRAM.
    const DRAM_BASE: usize;
    /// Largest end of DRAM: the window Non-secure entry points (`CPU_ON`, `CPU_SUSPEND`) must lie in.
    const DRAM_MAX_END: usize;
    /// The part of DRAM the monitor maps (Non-secure, to patch the device tree).
    const MONITOR_DRAM_WINDOW: Region;
    /// Where the device tree is handed to the monitor, and the room it may grow into in place.
    const DEVICE_TREE: Region;
    /// Where the QEMU tests write their parameter block (`-device loader`).
    const TEST_PARAMETERS_ADDRESS: usize;
    /// Where the monitor enters the Non-secure world at EL2 (hypervisor, test payload, Linux).
    const NON_SECURE_ENTRY: usize;
    /// The hypervisor's memory (image, stacks, heap, pools): starts at the Non-secure entry, never in
    /// the host's stage-2.
    const HYPERVISOR: Region;
    /// Where the hypervisor enters the host at EL1.
    const HOST_ENTRY: usize;
    /// Where the tooling loads the demo's guest image (inside host memory), and its largest size.
    const GUEST_IMAGE: Region;
    /// Start of the memory the host demo donates (metadata pages, then guest memory).
    const DONATION_BASE: usize;
    /// Where the tooling loads a Linux initramfs.
    const INITRD_ADDRESS: usize;

    /// The MMIO window the monitor and the hypervisor map as device memory (GIC, UARTs, GPIO).
    const DEVICES: Region;
    /// The GICv3.
    const GIC: GicLayout;
    /// The console.
    const UART: Uart;
    /// Board power-off and reset.
    const POWER: PowerControl;
    /// Where the hypervisor accepts an SMMUv3 (a forbidden range), or `None` when the board has none.
    const SMMU: Option<Region>;
    /// Physical ranges the host may never map: Secure memory, Secure-only devices, the SMMU.
    const FORBIDDEN: &'static [Range<u64>];

    /// Most CPUs the firmware supports on this board (the size of every per-CPU array).
    const MAX_CPUS: usize;
    /// How `MPIDR_EL1` maps to the dense CPU index.
    const CPU_NUMBERING: ClusterNumbering;

    /// The dense index of the CPU whose `MPIDR_EL1` is `mpidr`, or `None` when no such CPU exists.
    fn cpu_index(mpidr: u64) -> Option<usize> {
        Self::CPU_NUMBERING.index(mpidr, Self::MAX_CPUS)
    }

    /// The `MPIDR_EL1` affinity value of the CPU with dense index `index`.
    fn cpu_mpidr(index: usize) -> u64 {
        Self::CPU_NUMBERING.mpidr(index)
    }
}

/// Why a board's map is inconsistent ([`check`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MapError {
    /// The hypervisor's memory does not start at the Non-secure entry point.
    HypervisorNotAtEntry,
    /// The device tree, the test parameters, the hypervisor or the host entry lie outside the DRAM
    /// the monitor maps.
    OutsideDram,
    /// The device tree's room reaches the test parameters or the Non-secure entry.
    DeviceTreeOverlaps,
    /// The host entry, the guest image or the donated memory lie inside the hypervisor's memory.
    InsideHypervisor,
    /// A forbidden range overlaps DRAM (DRAM ownership is tracked page by page instead).
    ForbiddenOverlapsDram,
    /// Secure flash, Secure RAM, the power-control device or the SMMU is not inside a forbidden range.
    NotForbidden,
    /// The GIC, the UART or the power-control device is outside the device window.
    OutsideDevices,
    /// A cluster holds more CPUs than one SGI target list can name.
    ClusterTooLarge,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::HypervisorNotAtEntry => "the hypervisor does not start at the Non-secure entry point",
            Self::OutsideDram => "the device tree, test parameters, hypervisor or host entry lie outside the mapped DRAM",
            Self::DeviceTreeOverlaps => "the device tree's room reaches the test parameters or the Non-secure entry",
            Self::InsideHypervisor => "the host entry, guest image or donated memory lie inside the hypervisor's memory",
            Self::ForbiddenOverlapsDram => "a forbidden range overlaps DRAM",
            Self::NotForbidden => "Secure memory, the power control or the SMMU is not forbidden to the host",
            Self::OutsideDevices => "the GIC, the UART or the power control lies outside the device window",
            Self::ClusterTooLarge => "a cluster holds more CPUs than one SGI target list can name",
        })
    }
}

impl core::error::Error for MapError {}

/// Whether `region` lies inside one of `ranges`.
const fn inside_one_of(region: &Region, ranges: &[Range<u64>]) -> bool {
    let mut index = 0;
    while index < ranges.len() {
        let range = &ranges[index];
        if region.base as u64 >= range.start && region.end() as u64 <= range.end {
            return true;
        }
        index += 1;
    }
    false
}

/// Checks that `P`'s map is self-consistent: what the monitor, the hypervisor and the host demo
/// assume of each other. A `const fn`, so an image can check its board at build time.
pub const fn check<P: Platform>() -> Result<(), MapError> {
    let dram = P::MONITOR_DRAM_WINDOW;
    let hypervisor = P::HYPERVISOR;
    if hypervisor.base != P::NON_SECURE_ENTRY {
        return Err(MapError::HypervisorNotAtEntry);
    }
    if dram.base != P::DRAM_BASE
        || !dram.covers(&P::DEVICE_TREE)
        || !dram.contains(P::TEST_PARAMETERS_ADDRESS)
        || !dram.covers(&hypervisor)
        || !dram.contains(P::HOST_ENTRY)
        || dram.end() > P::DRAM_MAX_END
    {
        return Err(MapError::OutsideDram);
    }
    if P::DEVICE_TREE.end() > P::TEST_PARAMETERS_ADDRESS
        || P::DEVICE_TREE.end() > P::NON_SECURE_ENTRY
    {
        return Err(MapError::DeviceTreeOverlaps);
    }
    if hypervisor.contains(P::HOST_ENTRY)
        || hypervisor.contains(P::GUEST_IMAGE.base)
        || hypervisor.contains(P::DONATION_BASE)
        || hypervisor.contains(P::INITRD_ADDRESS)
    {
        return Err(MapError::InsideHypervisor);
    }
    let mut index = 0;
    while index < P::FORBIDDEN.len() {
        let range = &P::FORBIDDEN[index];
        if range.start < P::DRAM_MAX_END as u64 && (P::DRAM_BASE as u64) < range.end {
            return Err(MapError::ForbiddenOverlapsDram);
        }
        index += 1;
    }
    let gpio = P::POWER.registers();
    if !inside_one_of(&P::SECURE_FLASH, P::FORBIDDEN)
        || !inside_one_of(&P::SECURE_RAM, P::FORBIDDEN)
        || !inside_one_of(&gpio, P::FORBIDDEN)
    {
        return Err(MapError::NotForbidden);
    }
    if let Some(smmu) = P::SMMU
        && !inside_one_of(&smmu, P::FORBIDDEN)
    {
        return Err(MapError::NotForbidden);
    }
    if !P::DEVICES.contains(P::GIC.distributor)
        || !P::DEVICES
            .contains(P::GIC.redistributors + P::MAX_CPUS * P::GIC.redistributor_stride - 1)
        || !P::DEVICES.contains(P::UART.base)
        || !P::DEVICES.covers(&gpio)
    {
        return Err(MapError::OutsideDevices);
    }
    if P::CPU_NUMBERING.cpus_per_cluster() > SGI_TARGET_LIST_CPUS {
        return Err(MapError::ClusterTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
