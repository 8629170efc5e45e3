//! System control register values as after reset (MMU and caches off): what the monitor puts back
//! before it enters a PSCI entry point (on QEMU a CPU is never really powered down, so the kernel's
//! MMU would otherwise still be on) and what a new vCPU starts with.

use arm_sysregs::el1::registers::SctlrEl1;
use arm_sysregs::el2::registers::SctlrEl2;

/// `SCTLR_EL1` after reset (`0x30D0_0800`): MMU, caches and every trap control off; exceptions are
/// context-synchronizing (EIS, EOS), PSTATE.PAN untouched on exception entry (SPAN), no trap of
/// `SCXTNUM_EL0` (TSCXT), and the load/store-multiple defaults (LSMAOE, nTLSMD) — the bits that are
/// RES1 on a CPU without the features behind them.
pub const SCTLR_EL1: SctlrEl1 = SctlrEl1::EOS
    .union(SctlrEl1::TSCXT)
    .union(SctlrEl1::EIS)
    .union(SctlrEl1::SPAN)
    .union(SctlrEl1::NTLSMD)
    .union(SctlrEl1::LSMAOE);

/// `SCTLR_EL2` (`HCR_EL2.E2H` = 0) after reset (`0x30C5_0830`): MMU, caches and every control off;
/// only its RES1 bits (4, 5, 11, 16, 18, 22, 23, 28, 29), which `arm-sysregs` names by their
/// `E2H` = 1 meanings.
pub const SCTLR_EL2: SctlrEl2 = SctlrEl2::SA0
    .union(SctlrEl2::CP15BEN)
    .union(SctlrEl2::EOS)
    .union(SctlrEl2::NTWI)
    .union(SctlrEl2::NTWE)
    .union(SctlrEl2::EIS)
    .union(SctlrEl2::SPAN)
    .union(SctlrEl2::NTLSMD)
    .union(SctlrEl2::LSMAOE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mmu_caches_and_alignment_checks_are_off_after_reset() {
        for (m, a, c, i) in [
            (
                SCTLR_EL1.contains(SctlrEl1::M),
                SCTLR_EL1.contains(SctlrEl1::A),
                SCTLR_EL1.contains(SctlrEl1::C),
                SCTLR_EL1.contains(SctlrEl1::I),
            ),
            (
                SCTLR_EL2.contains(SctlrEl2::M),
                SCTLR_EL2.contains(SctlrEl2::A),
                SCTLR_EL2.contains(SctlrEl2::C),
                SCTLR_EL2.contains(SctlrEl2::I),
            ),
        ] {
            assert!(!(m || a || c || i));
        }
        // The architectural reset values, bit for bit.
        assert_eq!(SCTLR_EL1.bits(), 0x30D0_0800);
        assert_eq!(SCTLR_EL2.bits(), 0x30C5_0830);
    }
}
