//! SME Streaming-mode stores: the accesses erratum 4193714 lets complete late. One thread pinned to
//! a CPU runs batches of `ST1B` (an SVE store, in Streaming mode) and `STR ZA` stores over a 64 KiB
//! buffer, entering Streaming mode with ZA on (`SMSTART`) for each batch and leaving it after
//! (`SMSTOP`), so that Rust code and system calls between batches run in the normal mode.
//!
//! QEMU executes the stores exactly (it does not model the erratum): the stress shows that the
//! protocol does not depend on the other CPUs being idle and that stock pKVM's calls are answered
//! while every other CPU is busy in Streaming mode.

/// `AT_HWCAP2` bit for SME (Linux `HWCAP2_SME`).
const HWCAP2_SME: u64 = 1 << 23;

/// Stores per batch.
pub const BATCH: u64 = 4096;

/// Bytes of the buffer the stores cycle through.
const BUFFER_BYTES: usize = 64 * 1024;

/// Whether the kernel lets user space use SME.
pub fn available() -> bool {
    // SAFETY: `getauxval` only reads the auxiliary vector.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_SME != 0
}

/// A buffer the streaming stores write.
#[repr(C, align(4096))]
pub struct Buffer([u8; BUFFER_BYTES]);

impl Buffer {
    /// A zeroed buffer on the heap.
    pub fn new() -> Box<Self> {
        Box::new(Self([0; BUFFER_BYTES]))
    }
}

/// Runs one batch of [`BATCH`] streaming stores of each kind into `buffer`; returns the streaming
/// vector length in bytes. Call only when [`available`] says so.
pub fn batch(buffer: &mut Buffer) -> u64 {
    let start = buffer.0.as_mut_ptr();
    // The last row that fits: each store writes one streaming vector (at most 256 bytes).
    let last = start.wrapping_add(BUFFER_BYTES - 256);
    let vector_length: u64;
    // SAFETY: SME is available (checked by the caller through HWCAP2). Each store writes one
    // streaming vector (at most 256 bytes) at `x11`, which stays within `buffer` (it wraps to the
    // start before passing `last`, 256 bytes before the end). SMSTART/SMSTOP change the
    // vector registers (exiting Streaming mode zeroes Z0-Z31, P0-P15 and so V0-V31), so all
    // of them are declared clobbered; ZA is off again after SMSTOP. No stack use.
    unsafe {
        core::arch::asm!(
            ".arch_extension sme",
            "smstart",
            "ptrue p0.b",
            "rdsvl x9, #1",
            "mov   w12, #0",
            "mov   x11, {start}",
            "2:",
            "st1b  {{z0.b}}, p0, [x11]",
            "str   za[w12, 0], [x11]",
            "add   x11, x11, x9",
            "cmp   x11, {last}",
            "csel  x11, {start}, x11, hi",
            "subs  {count}, {count}, #1",
            "b.ne  2b",
            "smstop",
            "mov   {length}, x9",
            start = in(reg) start,
            last = in(reg) last,
            count = inout(reg) BATCH => _,
            length = out(reg) vector_length,
            out("x9") _, out("x11") _, out("x12") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _,
            out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
            out("v30") _, out("v31") _,
            options(nostack),
        );
    }
    vector_length
}
