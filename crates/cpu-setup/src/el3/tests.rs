use super::*;
use arm_sysregs::el1::fake::SYSREGS as EL1_REGISTERS;
use arm_sysregs::el3::fake::SYSREGS as EL3_REGISTERS;
use std::sync::Mutex;

/// The fake registers are process-wide: one test at a time uses them.
static FAKE_CPU: Mutex<()> = Mutex::new(());

/// The fake CPU, for one test (a test that failed while holding it does not fail the others).
fn lock_fake_cpu() -> std::sync::MutexGuard<'static, ()> {
    FAKE_CPU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A made-up CPU: its ID registers report `features`, its EL3 registers hold junk that
/// `init_cpu` must overwrite.
fn fake_cpu(features: CpuFeatures) {
    let mut el1 = EL1_REGISTERS.lock().unwrap();
    el1.reset();
    el1.id_aa64pfr0_el1 = IdAa64pfr0El1::empty()
        .with_sve(u8::from(features.sve))
        .with_csv2(if features.scxtnum { 2 } else { 1 });
    el1.id_aa64pfr1_el1 = IdAa64pfr1El1::empty().with_sme(u8::from(features.sme) * 2);
    el1.id_aa64mmfr0_el1 = IdAa64mmfr0El1::empty()
        .with_fgt(u8::from(features.fine_grained_traps))
        .with_ecv(u8::from(features.enhanced_counter_virtualization) * 2);
    el1.id_aa64mmfr1_el1 = IdAa64mmfr1El1::empty().with_hcx(u8::from(features.hcrx));
    let mut el3 = EL3_REGISTERS.lock().unwrap();
    el3.reset();
    el3.scr_el3 = ScrEl3::from_bits_retain(u64::MAX);
    el3.cptr_el3 = CptrEl3::from_bits_retain(u64::MAX);
    el3.mdcr_el3 = MdcrEl3::from_bits_retain(u64::MAX);
    el3.zcr_el3 = ZcrEl3::from_bits_retain(0xdead);
    el3.smcr_el3 = SmcrEl3::from_bits_retain(0xdead);
}

const EVERYTHING: CpuFeatures = CpuFeatures {
    sve: true,
    sme: true,
    scxtnum: true,
    fine_grained_traps: true,
    enhanced_counter_virtualization: true,
    hcrx: true,
};

const NOTHING: CpuFeatures = CpuFeatures {
    sve: false,
    sme: false,
    scxtnum: false,
    fine_grained_traps: false,
    enhanced_counter_virtualization: false,
    hcrx: false,
};

#[test]
fn a_c1_pro_like_cpu_gets_every_feature_untrapped_and_fiqs_at_el3() {
    let _cpu = lock_fake_cpu();
    fake_cpu(EVERYTHING);
    let written = init_cpu(Counting::Prohibited);
    let el3 = EL3_REGISTERS.lock().unwrap();
    assert_eq!(el3.scr_el3, written.scr);
    // The values the monitor wrote by hand before this crate (bits 0, 2, 4, 5, 8, 9, 10, 16, 17,
    // 25, 27, 28, 38, 41): the same controls, now named.
    assert_eq!(el3.scr_el3.bits(), 0x0000_0240_1a03_0735);
    assert_eq!(el3.cptr_el3.bits(), (1 << 8) | (1 << 12));
    assert_eq!(el3.mdcr_el3.bits(), 0);
    assert_eq!(el3.zcr_el3.len(), 15);
    assert_eq!(el3.smcr_el3.bits(), (1 << 31) | 15);
}

#[test]
fn a_cpu_without_optional_features_keeps_their_controls_clear() {
    let _cpu = lock_fake_cpu();
    fake_cpu(NOTHING);
    let written = init_cpu(Counting::Prohibited);
    let el3 = EL3_REGISTERS.lock().unwrap();
    assert_eq!(el3.scr_el3.bits(), 0x3_0735);
    assert_eq!(el3.cptr_el3, CptrEl3::empty());
    // Without SVE and SME their registers do not exist: never written (the junk stays).
    assert_eq!(written.zcr, None);
    assert_eq!(written.smcr, None);
    assert_eq!(el3.zcr_el3.bits(), 0xdead);
    assert_eq!(el3.smcr_el3.bits(), 0xdead);
}

#[test]
fn each_feature_lifts_exactly_its_own_trap() {
    let cases: [(CpuFeatures, ScrEl3); 5] = [
        (
            CpuFeatures {
                scxtnum: true,
                ..NOTHING
            },
            ScrEl3::ENSCXT,
        ),
        (
            CpuFeatures {
                fine_grained_traps: true,
                ..NOTHING
            },
            ScrEl3::FGTEN,
        ),
        (
            CpuFeatures {
                enhanced_counter_virtualization: true,
                ..NOTHING
            },
            ScrEl3::ECVEN,
        ),
        (
            CpuFeatures {
                hcrx: true,
                ..NOTHING
            },
            ScrEl3::HXEN,
        ),
        (
            CpuFeatures {
                sme: true,
                ..NOTHING
            },
            ScrEl3::ENTP2,
        ),
    ];
    let base = El3Controls::for_cpu(NOTHING, Counting::Prohibited).scr;
    for (features, bit) in cases {
        let _cpu = lock_fake_cpu();
        fake_cpu(features);
        assert_eq!(CpuFeatures::of_this_cpu(), features);
        let scr = init_cpu(Counting::Prohibited).scr;
        assert_eq!(scr, base | bit, "{features:?}");
    }
}

#[test]
fn the_non_secure_world_counts_el3_only_in_the_benchmark_build() {
    let _cpu = lock_fake_cpu();
    fake_cpu(EVERYTHING);
    init_cpu(Counting::Allowed);
    assert_eq!(EL3_REGISTERS.lock().unwrap().mdcr_el3, MdcrEl3::SPME);
    fake_cpu(EVERYTHING);
    init_cpu(Counting::Prohibited);
    assert!(
        !EL3_REGISTERS
            .lock()
            .unwrap()
            .mdcr_el3
            .contains(MdcrEl3::SPME)
    );
}

#[test]
fn security_controls_hold_for_every_feature_combination() {
    // Whatever the CPU has: lower levels Non-secure and AArch64, FIQs to EL3 (the rendezvous SGI
    // cannot be masked below), IRQs not taken to EL3, SMC not disabled, no Secure fetch from
    // Non-secure memory, and EL3 not visible to the Non-secure PMU.
    for mask in 0u8..64 {
        let bit = |n: u8| mask & (1 << n) != 0;
        let features = CpuFeatures {
            sve: bit(0),
            sme: bit(1),
            scxtnum: bit(2),
            fine_grained_traps: bit(3),
            enhanced_counter_virtualization: bit(4),
            hcrx: bit(5),
        };
        let _cpu = lock_fake_cpu();
        fake_cpu(features);
        let scr = init_cpu(Counting::Prohibited).scr;
        assert!(scr.contains(ScrEl3::NS | ScrEl3::RW | ScrEl3::FIQ | ScrEl3::SIF | ScrEl3::HCE));
        assert!(!scr.intersects(ScrEl3::IRQ | ScrEl3::SMD | ScrEl3::EA | ScrEl3::EEL2));
        assert_eq!(EL3_REGISTERS.lock().unwrap().mdcr_el3, MdcrEl3::empty());
    }
}
