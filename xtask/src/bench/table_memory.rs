//! Stage-2 table memory per GiB donated, computed with the ownership library itself (`mem-protect`
//! over `stage2`, the code the hypervisor runs) on the host: the hypervisor has no counter of its
//! table pages that the host could read, and the tables are the same data structure on the host.
//!
//! The machine: 2 GiB of DRAM whose first GiB the host has used (its stage-2 maps it in 2 MiB blocks,
//! as the hypervisor's fault handler does), a VM with a 40-bit IPA space, and 1 GiB donated either
//! one 4 KiB page per call or one 2 MiB block per call. The figures are the host stage-2 pages the
//! donation added (blocks split into page tables where single pages leave) and the guest stage-2's
//! pages without its root (paid once per VM, whatever it holds).

use super::records::{TableMemory, TableRow};
use crate::error::XtaskError;
use mem_protect::PAGE_SIZE;
use mem_protect::measurement::table_pages_per_gib;

/// Table memory for 1 GiB donated `pages_per_call` pages at a time.
fn table_row(pages_per_call: u64) -> Result<TableRow, XtaskError> {
    let pages = table_pages_per_gib(pages_per_call)
        .map_err(|error| XtaskError::Check(format!("table memory measurement: {error:?}")))?;
    let kib = |pages: usize| pages as u64 * PAGE_SIZE / 1024;
    Ok(TableRow {
        pages_per_call,
        host_kib_per_gib: kib(pages.host_added),
        guest_kib_per_gib: kib(pages.guest_without_root),
        guest_root_kib: kib(pages.guest_root),
    })
}

/// Table memory per GiB donated, in 4 KiB pages and in 2 MiB blocks.
pub fn measure() -> Result<TableMemory, XtaskError> {
    Ok(TableMemory {
        page: table_row(1)?,
        block: table_row(512)?,
        source: "computed on the host with the ownership library (mem-protect over stage2)".into(),
    })
}
