//! Bare-metal support shared by every firmware image of pkvm-rs on QEMU's `virt` board
//! (`-M virt,secure=on,virtualization=on,gic-version=3`): the memory map, the console, semihosting
//! exit, the secure power-control GPIO and CPU numbering.
//!
//! The EL3 monitor, the EL2 hypervisor and the EL1/EL2 test payloads all link this crate, so the
//! addresses they agree on (where the payload is entered, where the device tree is) live in one place:
//! [`memory_map`].
//!
//! What the images would otherwise repeat lives here too: the assembler macros of their entry code
//! and vectors and the exception frame ([`exception`], [`asm_macros!`]); for the monitor and the
//! hypervisor their heap's bump allocator ([`heap`]) and what their EL3 and EL2 identity maps share
//! ([`identity_map`]); for the Non-secure images the SMC call ([`smccc`]). This crate must not
//! depend on `alloc` (nor on `aarch64-paging`, which needs it): the payloads link it and have no
//! allocator.
//!
//! What we wrote ourselves and why: semihosting (`HLT #0xF000`) and the PL061 GPIO are a few lines
//! each and no crate of the field covers them; the console wraps `arm-pl011-uart`.
#![no_std]

pub mod console;
pub mod cpu;
pub mod exception;
pub mod heap;
pub mod hypervisor_map;
pub mod identity_map;
pub mod memory_map;
pub mod power;
pub mod semihosting;
pub mod smccc;
