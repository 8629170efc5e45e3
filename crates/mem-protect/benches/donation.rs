//! Host benchmarks of the ownership core: donating 1 GiB to a guest and reclaiming it, one page per call
//! (4 KiB mappings, as upstream Linux donates) and one 2 MiB block per call (block mappings).
//!
//! Prints the table memory each way needs per GiB, then lets criterion time the round trip; criterion's
//! throughput line gives pages per second (ns per page = 1e9 / that). Run with
//! `cargo xtask bench --host`.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mem_protect::PAGE_SIZE;
use mem_protect::measurement::{
    Backing, GIB, GUEST_BASE, donate_gib, machine, table_pages_per_gib,
};

const PAGES: u64 = GIB / PAGE_SIZE;

fn report_table_memory() {
    for (name, pages_per_call) in [("4 KiB pages", 1), ("2 MiB blocks", 512)] {
        let pages = table_pages_per_gib(pages_per_call).expect("measurement machine");
        println!(
            "table memory per GiB donated in {name}: host stage-2 +{} KiB, guest stage-2 {} KiB \
             (+ its {}-page root, once per VM)",
            pages.host_added * 4,
            pages.guest_without_root * 4,
            pages.guest_root,
        );
    }
}

fn donation(criterion: &mut Criterion) {
    report_table_memory();
    let mut group = criterion.benchmark_group("donate_and_reclaim_1GiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(PAGES));
    for (name, pages_per_call) in [("4KiB_pages", 1), ("2MiB_blocks", 512)] {
        group.bench_function(name, |bencher| {
            bencher.iter_batched_ref(
                Backing::new,
                |backing| {
                    let (mut machine, vm) = machine(backing).expect("measurement machine");
                    donate_gib(&mut machine, vm, pages_per_call).expect("donate");
                    machine.teardown_vm(vm).expect("teardown");
                    machine
                        .reclaim_guest_pages(vm, GUEST_BASE, PAGES)
                        .expect("reclaim");
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, donation);
criterion_main!(benches);
