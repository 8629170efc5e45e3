//! The Linux side of the stock-pKVM demo: programs that run in the initramfs of a Debian Linux ≥ 7.1
//! booted with `kvm-arm.mode=protected` on the pkvm-rs monitor.
//!
//! - `pvm-launch` ([`launcher`]): creates a protected VM through `/dev/kvm` (`kvm-ioctls`), runs
//!   its guest ([`guest`]) to `SYSTEM_OFF`, reads back what the guest reported through the page it
//!   left shared, probes every other page of guest memory through its own mapping ([`probe`]: each
//!   read must fault), tears the VM down and checks the secret did not come back to the host.
//! - `sme-stress` ([`sme`]): keeps one CPU storing in SME Streaming mode, the accesses erratum
//!   4193714 lets slip past a `TLBI; DSB` on another CPU.
//!
//! Built by `cargo xtask` as static `aarch64-unknown-linux-musl` binaries (`rust-lld`, `+crt-static`)
//! and put into the initramfs. Every line they print starts with the program's name, so the
//! xtask side can read the console log.

pub mod args;
pub mod cpu;
pub mod guest;
pub mod launcher;
pub mod probe;
pub mod sme;
