//! The in-memory structures the SMMU reads: level-1 stream table descriptors, stream table entries
//! (STE, 64 bytes) and context descriptors (CD, 64 bytes), as words to store (Arm IHI 0070, 5.2 to
//! 5.4).

/// Bytes of a stream table entry.
pub const STE_BYTES: u64 = 64;
/// Bytes of a context descriptor.
pub const CD_BYTES: u64 = 64;

/// A level-1 stream table descriptor: `L2Ptr` to a level-2 table of `2^(span - 1)` STEs.
pub fn level1_descriptor(level2_table: u64, entries_log2: u32) -> u64 {
    // Span [4:0] = log2(entries) + 1, L2Ptr [51:6].
    (level2_table & 0x000F_FFFF_FFFF_FFC0) | u64::from(entries_log2 + 1)
}

/// A stream table entry that translates with stage 1 through the single context descriptor at
/// `context_descriptor` (S1Fmt linear, S1CDMax 0). Configuration and table walks are write-back
/// cacheable, inner shareable; the stream is a Non-secure EL1 one (STRW = 0) with no ATS, faults are
/// terminated (S1STALLD = 0: QEMU 7.2 refuses anything else) and shareability is the incoming one.
pub fn stage1_stream_entry(context_descriptor: u64) -> [u64; 8] {
    let valid = 1;
    let config_stage1 = 0b101 << 1;
    let word0 = valid | config_stage1 | (context_descriptor & 0x000F_FFFF_FFFF_FFC0);
    // S1CIR = S1COR = 1 (write-back read-allocate), S1CSH = 3 (inner shareable), SHCFG = 1.
    let word1 = (1 << 2) | (1 << 4) | (3 << 6) | (1 << 44);
    [word0, word1, 0, 0, 0, 0, 0, 0]
}

/// A stream table entry that aborts every transaction (Config = 0, valid).
pub fn abort_stream_entry() -> [u64; 8] {
    [1, 0, 0, 0, 0, 0, 0, 0]
}

/// The stage-1 regime the hypervisor gives devices: a 39-bit input address space (T0SZ = 25, walks
/// from level 1), 4 KiB granule, TTB1 walks off, 40-bit output addresses.
pub const INPUT_ADDRESS_BITS: u32 = 39;

/// A context descriptor for the table at `table_root` with `asid`: the TCR fields as above
/// (IR0 = OR0 = write-back, SH0 inner shareable), AArch64 (AA64), faults recorded (R) and aborted
/// (A), the ASID not shared with the CPUs (ASET), `MAIR` attribute 0 normal write-back.
pub fn context_descriptor(table_root: u64, asid: u16) -> [u64; 8] {
    let t0sz = u64::from(64 - INPUT_ADDRESS_BITS);
    let tcr = t0sz | (1 << 8) | (1 << 10) | (3 << 12);
    let epd1 = 1 << 30;
    let valid = 1 << 31;
    let ips_40_bits = 2 << 32;
    let aa64 = 1 << 41;
    let record = 1 << 45;
    let abort = 1 << 46;
    let aset = 1 << 47;
    let word0 =
        tcr | epd1 | valid | ips_40_bits | aa64 | record | abort | aset | (u64::from(asid) << 48);
    let word1 = table_root & 0x000F_FFFF_FFFF_FFF0;
    let mair = 0xFF;
    [word0, word1, 0, mair, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level1_descriptor_fields() {
        // 256 STEs: Span = 9.
        assert_eq!(level1_descriptor(0x4020_4000, 8), 0x4020_4009);
    }

    #[test]
    fn stream_entry_fields() {
        let entry = stage1_stream_entry(0x4020_2800);
        // V = 1, Config = 0b101, S1Fmt = 0, S1ContextPtr = the CD, S1CDMax = 0.
        assert_eq!(entry[0], 0x4020_2800 | 0b1011);
        assert_eq!(entry[0] >> 59, 0);
        // S1STALLD (bit 27), EATS (29:28), STRW (31:30) clear; SHCFG (45:44) = 1.
        assert_eq!(entry[1] & (0x1F << 27), 0);
        assert_eq!((entry[1] >> 44) & 3, 1);
        assert_eq!(abort_stream_entry()[0] & 0b1111, 1);
    }

    #[test]
    fn context_descriptor_fields() {
        let cd = context_descriptor(0x4100_0000, 1);
        assert_eq!(cd[0] & 0x3F, 25, "T0SZ");
        assert_eq!((cd[0] >> 6) & 3, 0, "TG0 = 4 KiB");
        assert_eq!((cd[0] >> 14) & 1, 0, "EPD0");
        assert_eq!((cd[0] >> 30) & 1, 1, "EPD1");
        assert_eq!((cd[0] >> 31) & 1, 1, "V");
        assert_eq!((cd[0] >> 32) & 7, 2, "IPS");
        assert_eq!((cd[0] >> 41) & 1, 1, "AA64");
        assert_eq!((cd[0] >> 44) & 1, 0, "S (stall)");
        assert_eq!((cd[0] >> 45) & 3, 3, "R and A");
        assert_eq!(cd[0] >> 48, 1, "ASID");
        assert_eq!(cd[1], 0x4100_0000, "TTB0");
        assert_eq!(cd[3] & 0xFF, 0xFF, "MAIR attribute 0");
    }
}
