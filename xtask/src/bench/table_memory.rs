//! Stage-2 table memory per GiB donated, computed with the ownership library itself (`mem-protect`
//! over `stage2`, the code the hypervisor runs) on the host: the hypervisor has no counter of its
//! table pages that the host could read, and the tables are the same data structure on the host.
//!
//! The machine: 2 GiB of DRAM whose first GiB the host has used (its stage-2 maps it in 2 MiB blocks,
//! as the hypervisor's fault handler does), a VM with a 40-bit IPA space, and 1 GiB donated either
//! one 4 KiB page per call or one 2 MiB block per call. The figures are the host stage-2 pages the
//! donation added (blocks split into page tables where single pages leave) and the guest stage-2's
//! pages without its root (paid once per VM, whatever it holds).

use mem_protect::PAGE_SIZE;
use mem_protect::measurement::table_pages_per_gib;
use serde_json::{Value, json};

/// Table pages (host added, guest without root, guest root) for 1 GiB donated `pages_per_call` pages
/// at a time.
fn table_pages(pages_per_call: u64) -> Result<(usize, usize, usize), String> {
    let pages = table_pages_per_gib(pages_per_call)
        .map_err(|error| format!("table memory measurement: {error:?}"))?;
    Ok((pages.host_added, pages.guest_without_root, pages.guest_root))
}

/// Table memory per GiB donated, in 4 KiB pages and in 2 MiB blocks.
pub fn measure() -> Result<Value, String> {
    let mut figures = serde_json::Map::new();
    for (granule, pages_per_call) in [("page", 1), ("block", 512)] {
        let (host, guest, root) = table_pages(pages_per_call)?;
        let kib = |pages: usize| pages as u64 * PAGE_SIZE / 1024;
        figures.insert(
            granule.to_string(),
            json!({
                "pages_per_call": pages_per_call,
                "host_kib_per_gib": kib(host),
                "guest_kib_per_gib": kib(guest),
                "guest_root_kib": kib(root),
            }),
        );
    }
    figures.insert(
        "source".to_string(),
        json!("computed on the host with the ownership library (mem-protect over stage2)"),
    );
    Ok(Value::Object(figures))
}
