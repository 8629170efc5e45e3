//! Links the hypervisor with its own linker script.

fn main() {
    let directory = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg=-T{directory}/hyp.ld");
    println!("cargo:rerun-if-changed=hyp.ld");
}
