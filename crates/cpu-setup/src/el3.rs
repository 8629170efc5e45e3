//! EL3 controls that decide what the Non-secure world may do.

use crate::Counting;
use arm_sysregs::el1::registers::{IdAa64mmfr0El1, IdAa64mmfr1El1, IdAa64pfr0El1, IdAa64pfr1El1};
use arm_sysregs::el3::registers::{CptrEl3, MdcrEl3, ScrEl3, SmcrEl3, ZcrEl3};

/// The largest vector length field (`LEN` = 15: 2048-bit vectors, the architectural maximum);
/// the CPU clamps it to what it implements.
const LEN_MAX: u8 = 15;

/// The CPU features the EL3 controls depend on, read from its ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// FEAT_SVE.
    pub sve: bool,
    /// FEAT_SME.
    pub sme: bool,
    /// FEAT_CSV2_2 or later (`SCXTNUM_ELx`).
    pub scxtnum: bool,
    /// FEAT_FGT (fine-grained traps).
    pub fine_grained_traps: bool,
    /// FEAT_ECV (enhanced counter virtualization).
    pub enhanced_counter_virtualization: bool,
    /// FEAT_HCX (`HCRX_EL2`).
    pub hcrx: bool,
}

impl CpuFeatures {
    /// The features the ID registers report.
    pub fn from_id_registers(
        pfr0: IdAa64pfr0El1,
        pfr1: IdAa64pfr1El1,
        mmfr0: IdAa64mmfr0El1,
        mmfr1: IdAa64mmfr1El1,
    ) -> Self {
        Self {
            sve: pfr0.sve() != 0,
            sme: pfr1.sme() != 0,
            scxtnum: pfr0.csv2() >= 2,
            fine_grained_traps: mmfr0.fgt() != 0,
            enhanced_counter_virtualization: mmfr0.ecv() != 0,
            hcrx: mmfr1.hcx() != 0,
        }
    }

    /// The features of the CPU this runs on (on the host: of `arm-sysregs`' fake CPU, in tests).
    #[cfg(any(test, target_arch = "aarch64"))]
    pub fn of_this_cpu() -> Self {
        use arm_sysregs::el1::accessors::{
            read_id_aa64mmfr0_el1, read_id_aa64mmfr1_el1, read_id_aa64pfr0_el1,
            read_id_aa64pfr1_el1,
        };
        Self::from_id_registers(
            read_id_aa64pfr0_el1(),
            read_id_aa64pfr1_el1(),
            read_id_aa64mmfr0_el1(),
            read_id_aa64mmfr1_el1(),
        )
    }
}

/// What [`init_cpu`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El3Controls {
    /// `SCR_EL3`.
    pub scr: ScrEl3,
    /// `CPTR_EL3`.
    pub cptr: CptrEl3,
    /// `MDCR_EL3`.
    pub mdcr: MdcrEl3,
    /// `ZCR_EL3`, on a CPU with SVE.
    pub zcr: Option<ZcrEl3>,
    /// `SMCR_EL3`, on a CPU with SME.
    pub smcr: Option<SmcrEl3>,
}

impl El3Controls {
    /// The controls for a CPU with `features`:
    ///
    /// * `SCR_EL3`: lower levels are Non-secure (NS) and AArch64 (RW), HVC enabled (HCE), SMC enabled
    ///   (SMD clear), no Secure instruction fetch from Non-secure memory (SIF), IRQs to the lower
    ///   levels, FIQs (Group 0: the rendezvous SGI) to EL3, pointer authentication not trapped (APK,
    ///   API), and the features the hypervisor and Linux use not trapped when the CPU has them
    ///   (SCXTNUM, fine-grained traps, ECV, HCRX, TPIDR2 of SME).
    /// * `CPTR_EL3`: FP/SIMD, SVE and SME not trapped; `ZCR_EL3`/`SMCR_EL3` allow the largest vector
    ///   lengths (and SME's full A64 instruction set in Streaming mode, FA64).
    /// * `MDCR_EL3`: counting at EL3 only when `counting` allows it.
    pub fn for_cpu(features: CpuFeatures, counting: Counting) -> Self {
        let mut scr = ScrEl3::RES1
            | ScrEl3::NS
            | ScrEl3::FIQ
            | ScrEl3::HCE
            | ScrEl3::SIF
            | ScrEl3::RW
            | ScrEl3::APK
            | ScrEl3::API;
        scr.set(ScrEl3::ENSCXT, features.scxtnum);
        scr.set(ScrEl3::FGTEN, features.fine_grained_traps);
        scr.set(ScrEl3::ECVEN, features.enhanced_counter_virtualization);
        scr.set(ScrEl3::HXEN, features.hcrx);
        // TPIDR2_EL0 (SME) not trapped: Linux switches it on every context switch.
        scr.set(ScrEl3::ENTP2, features.sme);
        let mut cptr = CptrEl3::empty();
        cptr.set(CptrEl3::EZ, features.sve);
        cptr.set(CptrEl3::ESM, features.sme);
        let mdcr = match counting {
            Counting::Prohibited => MdcrEl3::empty(),
            Counting::Allowed => MdcrEl3::SPME,
        };
        Self {
            scr,
            cptr,
            mdcr,
            zcr: features.sve.then(|| ZcrEl3::empty().with_len(LEN_MAX)),
            smcr: features
                .sme
                .then(|| (SmcrEl3::empty() | SmcrEl3::FA64).with_len(LEN_MAX)),
        }
    }
}

/// Sets up this CPU's EL3 controls ([`El3Controls::for_cpu`] of its own ID registers); returns what
/// it wrote.
///
/// The monitor calls it on every CPU before the CPU first enters the Non-secure world, at boot and
/// after each warm boot. The monitor itself uses no FP/SIMD, SVE or SME (it is built soft-float), so
/// lifting those traps changes nothing for it. On the host it exists in tests only, against
/// `arm-sysregs`' fake registers.
#[cfg(any(test, target_arch = "aarch64"))]
pub fn init_cpu(counting: Counting) -> El3Controls {
    use arm_sysregs::el3::accessors::{
        write_cptr_el3, write_mdcr_el3, write_scr_el3, write_smcr_el3, write_zcr_el3,
    };
    let controls = El3Controls::for_cpu(CpuFeatures::of_this_cpu(), counting);
    // SAFETY: SCR_EL3 and CPTR_EL3 only change what the lower exception levels may do and where
    // their FIQs go; EL3's own execution and memory are not affected.
    unsafe {
        write_scr_el3(controls.scr);
        write_cptr_el3(controls.cptr);
    }
    write_mdcr_el3(controls.mdcr);
    crate::isb();
    if let Some(zcr) = controls.zcr {
        // SAFETY: ZCR_EL3 exists (SVE) and is no longer trapped (the CPTR_EL3 write above and its
        // ISB); it only bounds the vector length of the lower levels.
        unsafe { write_zcr_el3(zcr) };
    }
    if let Some(smcr) = controls.smcr {
        // SAFETY: SMCR_EL3 exists (SME) and is no longer trapped; it only bounds the streaming
        // vector length and the instruction set of the lower levels in Streaming mode.
        unsafe { write_smcr_el3(smcr) };
    }
    crate::isb();
    controls
}

#[cfg(test)]
mod tests;
