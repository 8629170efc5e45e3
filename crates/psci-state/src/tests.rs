//! Table tests: (state before, operation, expected result, state after).

use super::*;

const MEMORY: NonSecureMemory = NonSecureMemory {
    start: 0x4000_0000,
    end: 0x8000_0000,
};
const ENTRY: EntryPoint = EntryPoint {
    address: 0x4020_0000,
    context_id: 7,
};
const OTHER_ENTRY: EntryPoint = EntryPoint {
    address: 0x4030_0000,
    context_id: 9,
};

/// Two CPUs present in a table sized for four: CPU 0 in `first`, CPU 1 in `second`.
fn table(first: CpuPower, second: CpuPower) -> PowerTable<4> {
    let mut table = PowerTable::<4>::new();
    table.boot(2, 0);
    table.cpus[0] = first;
    table.cpus[1] = second;
    table
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    CpuOn(Option<usize>, EntryPoint),
    CpuOff(usize),
    Suspend(usize, SuspendKind, EntryPoint),
    Wake(usize),
    TakePending(usize),
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Outcome {
    Done,
    Failed(PsciError),
    Entry(Option<EntryPoint>),
}

fn apply(table: &mut PowerTable<4>, operation: Operation) -> Outcome {
    let result = match operation {
        Operation::CpuOn(target, entry) => table.cpu_on(target, entry, &MEMORY),
        Operation::CpuOff(cpu) => table.cpu_off(cpu),
        Operation::Suspend(cpu, kind, entry) => table.suspend(cpu, kind, entry, &MEMORY),
        Operation::Wake(cpu) => return Outcome::Entry(table.wake(cpu)),
        Operation::TakePending(cpu) => return Outcome::Entry(table.take_pending_entry(cpu)),
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(error) => Outcome::Failed(error),
    }
}

/// The states of CPUs 0 and 1.
type Pair = (CpuPower, CpuPower);
/// One row: (states before, operation, expected outcome, states after).
type Transition = (Pair, Operation, Outcome, Pair);

#[test]
fn state_machine() {
    use CpuPower::*;
    use Operation::*;
    use Outcome::*;
    let bad_entry = EntryPoint {
        address: 0x0E00_0000,
        context_id: 0,
    };
    let unaligned = EntryPoint {
        address: 0x4020_0002,
        context_id: 0,
    };
    #[rustfmt::skip]
    let cases: &[Transition] = &[
        // CPU_ON
        ((On, Off), CpuOn(Some(1), ENTRY), Done, (On, OnPending(ENTRY))),
        ((On, OnPending(ENTRY)), CpuOn(Some(1), OTHER_ENTRY), Failed(PsciError::OnPending), (On, OnPending(ENTRY))),
        ((On, On), CpuOn(Some(1), ENTRY), Failed(PsciError::AlreadyOn), (On, On)),
        ((On, Off), CpuOn(Some(0), ENTRY), Failed(PsciError::AlreadyOn), (On, Off)),
        ((On, Standby), CpuOn(Some(1), ENTRY), Failed(PsciError::AlreadyOn), (On, Standby)),
        ((On, PoweredDown(ENTRY)), CpuOn(Some(1), ENTRY), Failed(PsciError::AlreadyOn), (On, PoweredDown(ENTRY))),
        ((On, Off), CpuOn(Some(2), ENTRY), Failed(PsciError::InvalidParameters), (On, Off)),
        ((On, Off), CpuOn(None, ENTRY), Failed(PsciError::InvalidParameters), (On, Off)),
        ((On, Off), CpuOn(Some(1), bad_entry), Failed(PsciError::InvalidAddress), (On, Off)),
        ((On, Off), CpuOn(Some(1), unaligned), Failed(PsciError::InvalidAddress), (On, Off)),
        // The pen
        ((On, OnPending(ENTRY)), TakePending(1), Entry(Some(ENTRY)), (On, On)),
        ((On, Off), TakePending(1), Entry(None), (On, Off)),
        ((On, On), TakePending(1), Entry(None), (On, On)),
        // CPU_OFF
        ((On, On), CpuOff(1), Done, (On, Off)),
        ((On, Off), CpuOff(0), Failed(PsciError::Denied), (On, Off)),
        ((On, OnPending(ENTRY)), CpuOff(0), Done, (Off, OnPending(ENTRY))),
        ((On, Standby), CpuOff(0), Done, (Off, Standby)),
        // CPU_SUSPEND
        ((On, On), Suspend(1, SuspendKind::Standby, bad_entry), Done, (On, Standby)),
        ((On, On), Suspend(1, SuspendKind::PowerDown, ENTRY), Done, (On, PoweredDown(ENTRY))),
        ((On, On), Suspend(1, SuspendKind::PowerDown, bad_entry), Failed(PsciError::InvalidAddress), (On, On)),
        ((On, Off), Suspend(0, SuspendKind::PowerDown, ENTRY), Done, (PoweredDown(ENTRY), Off)),
        // Wake-up
        ((On, Standby), Wake(1), Entry(None), (On, On)),
        ((On, PoweredDown(ENTRY)), Wake(1), Entry(Some(ENTRY)), (On, On)),
        ((On, Off), Wake(1), Entry(None), (On, Off)),
    ];
    for &((first, second), operation, expected, (first_after, second_after)) in cases {
        let mut state = table(first, second);
        let outcome = apply(&mut state, operation);
        assert_eq!(
            outcome, expected,
            "{operation:?} from ({first:?}, {second:?})"
        );
        assert_eq!(
            (state.state(0), state.state(1)),
            (first_after, second_after),
            "state after {operation:?} from ({first:?}, {second:?})"
        );
    }
}

/// One row: (CPU 1's state, target, lowest affinity level, expected answer).
type AffinityCase = (
    CpuPower,
    Option<usize>,
    u64,
    Result<AffinityState, PsciError>,
);

#[test]
fn affinity_info() {
    use CpuPower::*;
    #[rustfmt::skip]
    let cases: &[AffinityCase] = &[
        (Off, Some(1), 0, Ok(AffinityState::Off)),
        (OnPending(ENTRY), Some(1), 0, Ok(AffinityState::OnPending)),
        (On, Some(1), 0, Ok(AffinityState::On)),
        (Standby, Some(1), 0, Ok(AffinityState::On)),
        (PoweredDown(ENTRY), Some(1), 0, Ok(AffinityState::On)),
        (On, Some(1), 1, Err(PsciError::InvalidParameters)),
        (On, Some(2), 0, Err(PsciError::InvalidParameters)),
        (On, None, 0, Err(PsciError::InvalidParameters)),
    ];
    for &(second, target, level, expected) in cases {
        let state = table(CpuPower::On, second);
        assert_eq!(
            state.affinity_info(target, level),
            expected,
            "{second:?} {target:?} level {level}"
        );
    }
}

#[test]
fn power_state_format() {
    #[rustfmt::skip]
    let cases: &[(u32, Result<SuspendKind, PsciError>)] = &[
        (0x0000_0000, Ok(SuspendKind::Standby)),
        (0x4000_0000, Ok(SuspendKind::PowerDown)),
        (0x0000_0001, Err(PsciError::InvalidParameters)), // StateID other than 0
        (0x4000_0002, Err(PsciError::InvalidParameters)), // StateID other than 0
        (0x0001_0000, Err(PsciError::InvalidParameters)), // original-format StateType bit
        (0x8000_0000, Err(PsciError::InvalidParameters)), // reserved
        (0x1000_0000, Err(PsciError::InvalidParameters)), // reserved
    ];
    for &(power_state, expected) in cases {
        assert_eq!(
            decode_power_state(power_state),
            expected,
            "{power_state:#x}"
        );
    }
}

#[test]
fn error_codes_match_psci() {
    let cases = [
        (PsciError::NotSupported, -1),
        (PsciError::InvalidParameters, -2),
        (PsciError::Denied, -3),
        (PsciError::AlreadyOn, -4),
        (PsciError::OnPending, -5),
        (PsciError::InternalFailure, -6),
        (PsciError::InvalidAddress, -9),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error:?}");
    }
    assert_eq!(
        [
            AffinityState::On.code(),
            AffinityState::Off.code(),
            AffinityState::OnPending.code()
        ],
        [0, 1, 2]
    );
}

#[test]
fn boot_marks_only_the_boot_cpu_on() {
    let mut table = PowerTable::<4>::new();
    table.boot(3, 1);
    assert_eq!(table.present(), 3);
    assert_eq!(
        [
            table.state(0),
            table.state(1),
            table.state(2),
            table.state(3)
        ],
        [CpuPower::Off, CpuPower::On, CpuPower::Off, CpuPower::Off]
    );
    table.boot(9, 0);
    assert_eq!(table.present(), 4, "never more CPUs than the table holds");
}
