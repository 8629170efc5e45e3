//! The bare-metal runtime every firmware image of pkvm-rs links, on any board: the console, semihosting
//! exit, board power requests, CPU numbering, and the selected board's map under the names the
//! payloads use. Nothing here names a board: the board is `board::Selected`, chosen by the `board`
//! crate's cargo features.
//!
//! The EL3 monitor, the EL2 hypervisor and the EL1/EL2 test payloads all link this crate, so the
//! addresses they agree on (where the payload is entered, where the device tree is) are read in one
//! place: [`memory_map`] and [`hypervisor_map`], from `board::Selected`.
//!
//! What the images would otherwise repeat lives here too: the assembler macros of their entry code
//! and vectors and the exception frame ([`exception`], [`asm_macros!`]); for the monitor and the
//! hypervisor their heap's bump allocator ([`heap`]); for the Non-secure images the SMC call
//! ([`smccc`]). What their EL3 and EL2 identity maps share is in the `identity-map` crate: this crate
//! must not depend on `alloc` (nor on `aarch64-paging`, which needs it), since the payloads link it
//! and have no allocator.
//!
//! What we wrote ourselves and why: semihosting (`HLT #0xF000`) is a few lines; the power requests
//! drive the PL061 through `arm-pl061` and sbsa-ref's one command word by hand (see [`power`]); the console wraps `arm-pl011-uart`; [`sysreg`] has the few system
//! registers the payloads reach that `arm-sysregs` lacks (its doc has the table).
#![no_std]

pub mod console;
pub mod cpu;
pub mod exception;
pub mod heap;
pub mod hypervisor_map;
pub mod memory_map;
pub mod power;
pub mod semihosting;
pub mod smccc;
pub mod sysreg;
