//! Real threads as CPUs over the real atomic memory: calls, SGI answers and power transitions
//! race for real. Bounded iterations, no sleeps.
//!
//! Each thread counts its "lower-EL periods" (`lower_period`, bumped every time it goes back to
//! a lower EL) and, at each DSB, records the period the DSB covers (`covered_period`). A caller
//! snapshots every CPU's period before its call; on `Done`, every affected CPU must have covered
//! that period (either it was not exposed, or it ran a DSB since).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use rendezvous::{
    CpuIndex, CpuSet, Deadline, Inactivity, RendezvousPlatform, RendezvousStorage,
    WorkaroundOutcome, handle_sgi, join_active_set, leave_active_set, request_workaround,
};

const CPUS: usize = 4;
const ITERATIONS: usize = 5000;

struct Shared {
    sgi_pending: [AtomicBool; CPUS],
    lower_period: [AtomicU64; CPUS],
    covered_period: [AtomicU64; CPUS],
    affected: [bool; CPUS],
    violations: AtomicUsize,
    done_calls: AtomicUsize,
    sgis_sent: AtomicUsize,
    start: Instant,
    /// All CPUs joined: the racing starts together.
    all_joined: Barrier,
    /// CPUs that have finished their iterations.
    finished: AtomicUsize,
}

struct ThreadPlatform<'a> {
    me: usize,
    shared: &'a Shared,
}

impl RendezvousPlatform for ThreadPlatform<'_> {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        for target in targets.iter() {
            self.shared.sgi_pending[target.get()].store(true, Ordering::SeqCst);
        }
        self.shared.sgis_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn local_dsb(&mut self) {
        let period = self.shared.lower_period[self.me].load(Ordering::SeqCst);
        self.shared.covered_period[self.me].store(period, Ordering::SeqCst);
    }

    fn send_event(&mut self) {}

    fn wait_for_event(&mut self) {
        thread::yield_now();
    }

    fn now(&mut self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Back to a lower EL: a new period of possibly outstanding accesses.
fn run_lower_el(shared: &Shared, me: usize) {
    shared.lower_period[me].fetch_add(1, Ordering::SeqCst);
}

fn answer_pending_sgi(
    memory: &rendezvous::AtomicRendezvousMemory<'_>,
    platform: &mut ThreadPlatform<'_>,
) {
    let me = platform.me;
    if platform.shared.sgi_pending[me].swap(false, Ordering::SeqCst) {
        handle_sgi(memory, platform, CpuIndex::new(me)).expect("cpu in range");
        run_lower_el(platform.shared, me);
    }
}

fn cpu_thread(storage: &RendezvousStorage<CPUS>, shared: &Shared, me: usize) {
    let memory = storage.memory(CPUS);
    let mut platform = ThreadPlatform { me, shared };
    let cpu = CpuIndex::new(me);
    join_active_set(&memory, &mut platform, cpu, shared.affected[me]).expect("cpu in range");
    run_lower_el(shared, me);
    shared.all_joined.wait();
    let mut random = 0x2545_F491_4F6C_DD1D_u64.wrapping_mul(me as u64 + 1);
    for _ in 0..ITERATIONS {
        answer_pending_sgi(&memory, &mut platform);
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        match random % 16 {
            0..=9 => {
                let snapshot: Vec<u64> = (0..CPUS)
                    .map(|other| shared.lower_period[other].load(Ordering::SeqCst))
                    .collect();
                // A deadline far beyond the test's run time: a timeout means a lost answer.
                let deadline = Deadline::after(platform.now(), 20_000_000);
                let outcome = request_workaround::<_, _, 1>(&memory, &mut platform, cpu, deadline)
                    .expect("cpu in range");
                match outcome {
                    WorkaroundOutcome::Done => {
                        shared.done_calls.fetch_add(1, Ordering::Relaxed);
                        for other in (0..CPUS).filter(|&other| shared.affected[other]) {
                            let covered = shared.covered_period[other].load(Ordering::SeqCst);
                            if covered < snapshot[other] {
                                shared.violations.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    WorkaroundOutcome::NotNeeded | WorkaroundOutcome::Timeout { .. } => {
                        shared.violations.fetch_add(1, Ordering::SeqCst);
                    }
                }
                run_lower_el(shared, me);
            }
            10 => {
                let inactivity = match random % 3 {
                    0 => Inactivity::Off,
                    1 => Inactivity::PowerDownSuspended,
                    _ => Inactivity::RetentionSuspended,
                };
                leave_active_set(&memory, &mut platform, cpu, inactivity).expect("cpu in range");
                // Inactive: answers nothing for a while.
                for _ in 0..(random % 64) {
                    std::hint::spin_loop();
                }
                join_active_set(&memory, &mut platform, cpu, shared.affected[me])
                    .expect("cpu in range");
                run_lower_el(shared, me);
            }
            _ => run_lower_el(shared, me),
        }
    }
    // Keep answering until everybody is done, then leave for good.
    shared.finished.fetch_add(1, Ordering::SeqCst);
    while shared.finished.load(Ordering::SeqCst) < CPUS {
        answer_pending_sgi(&memory, &mut platform);
        thread::yield_now();
    }
    leave_active_set(&memory, &mut platform, cpu, Inactivity::Off).expect("cpu in range");
}

#[test]
fn threads_race_calls_answers_and_power_transitions() {
    let storage = RendezvousStorage::<CPUS>::new();
    let shared = Shared {
        sgi_pending: [const { AtomicBool::new(false) }; CPUS],
        lower_period: [const { AtomicU64::new(0) }; CPUS],
        covered_period: [const { AtomicU64::new(0) }; CPUS],
        // A mixed system: CPU 3 does not have the erratum.
        affected: [true, true, true, false],
        violations: AtomicUsize::new(0),
        done_calls: AtomicUsize::new(0),
        sgis_sent: AtomicUsize::new(0),
        start: Instant::now(),
        all_joined: Barrier::new(CPUS),
        finished: AtomicUsize::new(0),
    };
    thread::scope(|scope| {
        for me in 0..CPUS {
            let storage = &storage;
            let shared = &shared;
            scope.spawn(move || cpu_thread(storage, shared, me));
        }
    });
    assert_eq!(shared.violations.load(Ordering::SeqCst), 0);
    let done = shared.done_calls.load(Ordering::SeqCst);
    assert!(done > CPUS * ITERATIONS / 4, "only {done} calls completed");
    let sgis = shared.sgis_sent.load(Ordering::SeqCst);
    println!("{done} calls done, {sgis} SGI sends");
    assert!(
        sgis > done / 20,
        "only {sgis} SGI sends for {done} calls: the threads hardly overlapped"
    );
}
