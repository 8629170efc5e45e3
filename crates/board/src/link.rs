//! Where each image is linked, from the board's map: the build script of each image writes
//! [`MemoryBlock`] into `memory.ld`, which its linker script includes, so no linker script repeats
//! an address.

use crate::{Platform, Region};
use core::fmt;

/// A firmware image with a fixed link address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Image {
    /// The EL3 monitor: runs from Secure RAM.
    Monitor,
    /// The EL2 hypervisor: its own memory, from the Non-secure entry.
    Hypervisor,
    /// The EL2 test payload: in the hypervisor's place.
    TestPayload,
    /// The EL1 host demo: from the host entry up to where the guest image is loaded.
    HostDemo,
}

/// The memory `image` is linked into on board `P`.
pub const fn link_region<P: Platform>(image: Image) -> Region {
    match image {
        Image::Monitor => P::SECURE_RAM,
        Image::Hypervisor | Image::TestPayload => P::HYPERVISOR,
        Image::HostDemo => Region::new(P::HOST_ENTRY, P::GUEST_IMAGE.base - P::HOST_ENTRY),
    }
}

/// A linker script fragment: the `MEMORY` block with one region `name`, and `__board_max_cpus` (the
/// number of per-CPU stacks the script reserves).
#[derive(Clone, Copy, Debug)]
pub struct MemoryBlock<'a> {
    /// The region's name in the linker script (`>name` in its sections).
    pub name: &'a str,
    /// Where the image is linked.
    pub region: Region,
    /// The board's `MAX_CPUS`.
    pub max_cpus: usize,
}

impl MemoryBlock<'_> {
    /// The fragment for `image` on board `P`, with the region called `name`.
    pub const fn new<P: Platform>(name: &str, image: Image) -> MemoryBlock<'_> {
        MemoryBlock {
            name,
            region: link_region::<P>(image),
            max_cpus: P::MAX_CPUS,
        }
    }
}

impl fmt::Display for MemoryBlock<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "/* Written by the build script from crates/board. */"
        )?;
        writeln!(formatter, "MEMORY")?;
        writeln!(formatter, "{{")?;
        writeln!(
            formatter,
            "    {} : ORIGIN = {:#x}, LENGTH = {:#x}",
            self.name, self.region.base, self.region.size
        )?;
        writeln!(formatter, "}}")?;
        writeln!(formatter, "__board_max_cpus = {};", self.max_cpus)
    }
}

/// What every image's build script does, once: writes [`MemoryBlock`] for `image` on the selected
/// board into `$OUT_DIR/memory.ld`, puts that directory on the link search path, links with the
/// image's own `linker_script` (in its crate directory), and passes the board's name to the image
/// (`PKVM_BOARD`, so the image can refuse to build when its code reads another board). Only build
/// scripts have `std`: feature `build-script`.
#[cfg(feature = "build-script")]
pub fn link_image(region_name: &str, image: Image, linker_script: &str) {
    let directory = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let Ok(out) = std::env::var("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let block = MemoryBlock::new::<crate::Selected>(region_name, image);
    let path = std::path::Path::new(&out).join("memory.ld");
    if let Err(error) = std::fs::write(&path, block.to_string()) {
        panic!("cannot write {}: {error}", path.display());
    }
    println!("cargo:rustc-link-search={out}");
    println!(
        "cargo:rustc-env=PKVM_BOARD={}",
        <crate::Selected as Platform>::NAME
    );
    println!("cargo:rustc-link-arg=-T{directory}/{linker_script}");
    println!("cargo:rerun-if-changed={linker_script}");
}
