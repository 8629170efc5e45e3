//! The hypervisor's boot decisions that depend on the board and the CPU, kept apart from the
//! hardware so they run as host tests against `board::TestPlatform` and made-up CPU identities:
//!
//! * [`host_memory_layout`]: what the host may map — the board's forbidden ranges and the
//!   hypervisor's memory come from [`board::Platform`], DRAM and the device allowlist from the
//!   device tree;
//! * [`decide_protected_mode`]: on a CPU with erratum 4193714 protected mode needs the firmware's
//!   DVMSync call to answer 0; an unaffected CPU never makes the call.

use abi::hypercall::ProtectedModeStatus;
use board::Platform;
use core::ops::Range;
use errata::{CpuIdentity, Erratum, SmeDvmSyncEarlyAck};
use mem_protect::{ErratumMitigation, MemoryLayout};

/// The physical memory map the host's stage-2 is checked against on board `P`: `dram` and the
/// allowed `devices` (both read from the device tree), the board's hypervisor region and forbidden
/// ranges.
pub fn host_memory_layout<P: Platform>(
    dram: Range<u64>,
    devices: &[Range<u64>],
) -> MemoryLayout<'_> {
    MemoryLayout {
        dram,
        hypervisor: P::HYPERVISOR.range(),
        forbidden: P::FORBIDDEN,
        devices,
    }
}

/// What the boot CPU found about erratum 4193714, and what follows for protected mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedModeDecision {
    /// The CPU is not affected: protected mode on, no firmware call ever.
    NotAffected,
    /// The CPU is affected and the firmware answered the DVMSync call with 0: protected mode on,
    /// every revocation makes the call.
    Mitigated,
    /// The CPU is affected and the firmware answered something else (`NOT_SUPPORTED` from firmware
    /// without the fix): protected mode refused, the host runs unprotected.
    FirmwareMissing {
        /// The firmware's `x0`.
        answer: i64,
    },
}

impl ProtectedModeDecision {
    /// The mitigation the ownership rules use (an affected CPU always gets the firmware call, even
    /// when protected mode is refused: the host still loses the hypervisor's pages).
    pub fn mitigation(self) -> ErratumMitigation {
        match self {
            Self::NotAffected => ErratumMitigation::NotNeeded,
            Self::Mitigated | Self::FirmwareMissing { .. } => ErratumMitigation::FirmwareDvmSync,
        }
    }

    /// What `QUERY_STATUS` reports to the host.
    pub fn status(self) -> ProtectedModeStatus {
        match self {
            Self::NotAffected | Self::Mitigated => ProtectedModeStatus::Enabled,
            Self::FirmwareMissing { answer } => ProtectedModeStatus::ErratumFirmwareMissing {
                // The register's bits, as the firmware returned them.
                firmware_result: answer as u64,
            },
        }
    }
}

/// Decides protected mode (BRIEF §3) for the boot CPU `cpu`: `dvm_sync` makes the firmware call and
/// returns its `x0`; it is called only when `cpu` is affected.
pub fn decide_protected_mode(
    cpu: &CpuIdentity,
    dvm_sync: impl FnOnce() -> i64,
) -> ProtectedModeDecision {
    if !SmeDvmSyncEarlyAck::applies_to(cpu) {
        return ProtectedModeDecision::NotAffected;
    }
    match dvm_sync() {
        0 => ProtectedModeDecision::Mitigated,
        answer => ProtectedModeDecision::FirmwareMissing { answer },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use board::{QemuVirt, TestPlatform};
    use errata::CpuModel;
    use mem_protect::AddressKind;

    /// Where the host's accesses land on the test board: its Secure memory, SMMU and power GPIO
    /// are forbidden, its DRAM is memory, its UART and GIC distributor devices; QEMU's addresses
    /// mean nothing there.
    #[test]
    fn the_host_map_follows_the_board() {
        let uart = TestPlatform::UART.base as u64;
        let gicd = TestPlatform::GIC.distributor as u64;
        let devices = [uart..uart + 0x1000, gicd..gicd + 0x1_0000];
        let layout = host_memory_layout::<TestPlatform>(0x8000_0000..0xC000_0000, &devices);
        assert_eq!(layout.hypervisor, 0x8040_0000..0x8140_0000);
        let cases: &[(u64, AddressKind)] = &[
            (0x1000_0000, AddressKind::Forbidden),
            (0x1400_0000, AddressKind::Forbidden),
            (0x2B40_0000, AddressKind::Forbidden),
            (0x2C0B_0000, AddressKind::Forbidden),
            (0x2C09_0000, AddressKind::Device),
            (0x2F00_0000, AddressKind::Device),
            (0x8000_0000, AddressKind::Memory),
            (0xBFFF_F000, AddressKind::Memory),
            // QEMU `virt`'s UART, Secure RAM and DRAM: nothing on this board.
            (0x0900_0000, AddressKind::Forbidden),
            (0x0E00_0000, AddressKind::Forbidden),
            (0x4000_0000, AddressKind::Forbidden),
        ];
        for &(address, kind) in cases {
            assert_eq!(layout.classify(address), kind, "{address:#x}");
        }
        let qemu = host_memory_layout::<QemuVirt>(0x4000_0000..0x8000_0000, &[]);
        assert_eq!(qemu.classify(0x0E00_0000), AddressKind::Forbidden);
        assert_eq!(qemu.classify(0x0905_0000), AddressKind::Forbidden);
        assert_eq!(qemu.classify(0x4000_0000), AddressKind::Memory);
        assert_eq!(qemu.hypervisor, 0x4020_0000..0x4220_0000);
    }

    fn identity(model: &str) -> CpuIdentity {
        let Ok(model) = CpuModel::parse(model) else {
            panic!("unknown model {model}");
        };
        model.identity_in_qemu()
    }

    /// (CPU, firmware answer, decision, firmware called).
    #[test]
    fn protected_mode_needs_the_firmware_call_only_on_affected_cpus() {
        let cases: &[(&str, i64, ProtectedModeDecision, bool)] = &[
            ("c1-pro-r0p2", 0, ProtectedModeDecision::Mitigated, true),
            (
                "c1-pro-r0p2",
                -1,
                ProtectedModeDecision::FirmwareMissing { answer: -1 },
                true,
            ),
            ("c1-pro-r2p0", -1, ProtectedModeDecision::NotAffected, false),
            ("max", -1, ProtectedModeDecision::NotAffected, false),
        ];
        for &(model, answer, expected, calls) in cases {
            let mut called = false;
            let decision = decide_protected_mode(&identity(model), || {
                called = true;
                answer
            });
            assert_eq!(
                (decision, called),
                (expected, calls),
                "{model}, answer {answer}"
            );
        }
        assert_eq!(
            ProtectedModeDecision::FirmwareMissing { answer: -1 }.status(),
            ProtectedModeStatus::ErratumFirmwareMissing {
                firmware_result: u64::MAX
            }
        );
        assert_eq!(
            ProtectedModeDecision::FirmwareMissing { answer: -1 }.mitigation(),
            ErratumMitigation::FirmwareDvmSync
        );
        assert_eq!(
            ProtectedModeDecision::NotAffected.mitigation(),
            ErratumMitigation::NotNeeded
        );
    }
}
