//! Links the host demo with its own linker script (host.ld), whose `MEMORY` block (where the image lives, and
//! how many per-CPU stacks it reserves) is written here from the board's map into `memory.ld`.

use board::{Image, MemoryBlock};

/// The board the image is built for: the `board` crate's selection (its cargo features).
type Board = board::Selected;

fn main() {
    let directory = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let Ok(out) = std::env::var("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let block = MemoryBlock::new::<Board>("host", Image::HostDemo);
    let path = std::path::Path::new(&out).join("memory.ld");
    if let Err(error) = std::fs::write(&path, block.to_string()) {
        panic!("cannot write {}: {error}", path.display());
    }
    println!("cargo:rustc-link-search={out}");
    // The image checks at build time that its code reads the board it was linked for.
    println!(
        "cargo:rustc-env=PKVM_BOARD={}",
        <Board as board::Platform>::NAME
    );
    println!("cargo:rustc-link-arg=-T{directory}/host.ld");
    println!("cargo:rerun-if-changed=host.ld");
}
