//! The seeded bugs of `cargo xtask model --mutants`: a standing mutation score for the checker.
//!
//! Each mutant is a few lines at the exact place of the real code in `rendezvous`, `mem-protect` or
//! `stage2`, behind `#[cfg(mutant = "name")]` (never set in a normal build). `cargo xtask model
//! --mutants` builds and runs the checker's tests once per mutant (`RUSTFLAGS=--cfg mutant="name"`,
//! a separate target directory, release) and reports which test caught it. Every mutant here is a
//! real bug; each must be caught.

/// Which of the checker's test suites is expected to catch a mutant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// `cargo test --release -p model-checker` (the scenarios of parts (a)–(d)).
    Model,
    /// `RUSTFLAGS="--cfg loom" cargo test --release -p rendezvous --test loom` (the monitor's atomic
    /// memory under the C11 model).
    Loom,
}

/// One seeded bug.
#[derive(Clone, Copy, Debug)]
pub struct Mutant {
    /// The `cfg(mutant = ...)` value.
    pub name: &'static str,
    /// The crate it is seeded in.
    pub krate: &'static str,
    /// What it breaks, in words.
    pub breaks: &'static str,
    /// The suite expected to catch it.
    pub suite: Suite,
}

/// Every seeded bug.
pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "rendezvous_increment_returns_old",
        krate: "rendezvous",
        breaks: "atomics: the increment returns the counter's old value (the caller waits for an \
                 older request)",
        suite: Suite::Loom,
    },
    Mutant {
        name: "rendezvous_no_leave_fence",
        krate: "rendezvous",
        breaks: "atomics: no fence between a record store and the counter read (Dekker, leaving \
                 side)",
        suite: Suite::Loom,
    },
    Mutant {
        name: "rendezvous_no_caller_fence",
        krate: "rendezvous",
        breaks: "atomics: no fence between the increment and the record reads (Dekker, caller side)",
        suite: Suite::Loom,
    },
    Mutant {
        name: "rendezvous_publish_before_dsb",
        krate: "rendezvous",
        breaks: "order: a servicing CPU publishes the counter before its DSB",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_leave_stores_before_dsb",
        krate: "rendezvous",
        breaks: "order: a leaving CPU stores its inactive record before its DSB",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_leave_skips_service",
        krate: "rendezvous",
        breaks: "liveness: a leaving CPU stops servicing requests after its inactive store",
        suite: Suite::Model,
    },
    Mutant {
        name: "cpu_set_mask_by_cpu_number",
        krate: "rendezvous",
        breaks: "CpuSet beyond 64 CPUs: a search from inside a later word masks by the CPU number, \
                 so CPU 65 is skipped after CPU 64 (no SGI, not waited for)",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_scan_skips_last_cpu",
        krate: "rendezvous",
        breaks: "targets: the caller's scan never reads the last CPU's record (an affected last CPU \
                 gets no SGI; harmless when it is unaffected)",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_local_barrier_ishst",
        krate: "rendezvous",
        breaks: "barrier kind: the local barrier is DSB ISHST (stores only; SME loads stay in \
                 flight)",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_local_barrier_nsh",
        krate: "rendezvous",
        breaks: "barrier domain: the local barrier is DSB NSH (completes for this PE only)",
        suite: Suite::Model,
    },
    Mutant {
        name: "rendezvous_no_sgi_barrier",
        krate: "rendezvous",
        breaks: "SGI ordering: no barrier before the ICC_SGI0R_EL1 write (the target may read the \
                 old request counter)",
        suite: Suite::Model,
    },
    Mutant {
        name: "mem_protect_ignores_call_failure",
        krate: "mem-protect",
        breaks: "rollback: a failed firmware call is treated as success",
        suite: Suite::Model,
    },
    Mutant {
        name: "mem_protect_donate_rollback_skipped",
        krate: "mem-protect",
        breaks: "rollback: after a failed call the donated pages stay annotated to the guest",
        suite: Suite::Model,
    },
    Mutant {
        name: "mem_protect_unshare_rollback_keeps_annotation",
        krate: "mem-protect",
        breaks: "rollback: a failed unshare keeps the guest's annotation instead of the host's \
                 borrowed mapping",
        suite: Suite::Model,
    },
    Mutant {
        name: "mem_protect_guest_maps_before_call",
        krate: "mem-protect",
        breaks: "commit order: the guest's mapping is written before the firmware call (the event \
                 stays after it)",
        suite: Suite::Model,
    },
    Mutant {
        name: "mem_protect_hyp_owns_before_call",
        krate: "mem-protect",
        breaks: "commit order: the hypervisor's page state becomes Owned before the firmware call",
        suite: Suite::Model,
    },
    Mutant {
        name: "stage2_no_stage1_tlbi",
        krate: "stage2",
        breaks: "TLB: no TLBI VMALLE1IS after breaking host entries (combined stage-1 entries \
                 survive)",
        suite: Suite::Model,
    },
    Mutant {
        name: "stage2_no_dsb_after_ipa_tlbi",
        krate: "stage2",
        breaks: "barrier: no DSB ISH completing the TLBI IPAS2E1IS before TLBI VMALLE1IS",
        suite: Suite::Model,
    },
];

/// The `mutant = "..."` names found in `source` (one Rust file's text).
pub fn names_in(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (index, _) in source.match_indices("mutant = \"") {
        let rest = &source[index + "mutant = \"".len()..];
        if let Some(end) = rest.find('"') {
            names.push(rest[..end].to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Every `cfg(mutant = ...)` seeded in the library crates is in the catalogue, and every
    /// catalogue entry is seeded in the crate it names.
    #[test]
    fn catalogue_matches_the_sources() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut seeded = BTreeSet::new();
        for krate in ["rendezvous", "mem-protect", "stage2"] {
            let source_dir = crates.join(krate).join("src");
            let entries = std::fs::read_dir(&source_dir).expect("source directory");
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|extension| extension == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source");
                    for name in names_in(&text) {
                        seeded.insert((krate.to_string(), name));
                    }
                }
            }
        }
        let catalogue: BTreeSet<(String, String)> = MUTANTS
            .iter()
            .map(|mutant| (mutant.krate.to_string(), mutant.name.to_string()))
            .collect();
        assert_eq!(seeded, catalogue);
    }
}
