//! Register offsets and fields of the SMMUv3 programming interface (Arm IHI 0070, chapter 6), and
//! the ID-register checks the hypervisor needs.

/// `SMMU_IDR0`: features.
pub const IDR0: usize = 0x00;
/// `SMMU_IDR1`: queue and StreamID sizes.
pub const IDR1: usize = 0x04;
/// `SMMU_IDR5`: output address size and granules.
pub const IDR5: usize = 0x14;
/// `SMMU_CR0`: enables (SMMUEN, queues).
pub const CR0: usize = 0x20;
/// `SMMU_CR0ACK`: what `CR0` has taken effect.
pub const CR0ACK: usize = 0x24;
/// `SMMU_CR1`: cacheability and shareability of table and queue accesses.
pub const CR1: usize = 0x28;
/// `SMMU_CR2`: record invalid StreamIDs, private TLB maintenance.
pub const CR2: usize = 0x2C;
/// `SMMU_GBPA`: what happens to transactions while `SMMUEN` is 0.
pub const GBPA: usize = 0x44;
/// `SMMU_IRQ_CTRL`: interrupt enables (left 0: the hypervisor polls).
pub const IRQ_CTRL: usize = 0x50;
/// `SMMU_GERROR`: global errors (bit 0: command queue error).
pub const GERROR: usize = 0x60;
/// `SMMU_GERRORN`: software's acknowledgement of global errors.
pub const GERRORN: usize = 0x64;
/// `SMMU_STRTAB_BASE`: stream table address.
pub const STRTAB_BASE: usize = 0x80;
/// `SMMU_STRTAB_BASE_CFG`: stream table format and size.
pub const STRTAB_BASE_CFG: usize = 0x88;
/// `SMMU_CMDQ_BASE`: command queue address and size.
pub const CMDQ_BASE: usize = 0x90;
/// `SMMU_CMDQ_PROD`: written by software after adding commands.
pub const CMDQ_PROD: usize = 0x98;
/// `SMMU_CMDQ_CONS`: how far the SMMU has consumed (bits 30:24: the error of a failed command).
pub const CMDQ_CONS: usize = 0x9C;
/// `SMMU_EVENTQ_BASE`: event queue address and size.
pub const EVENTQ_BASE: usize = 0xA0;
/// `SMMU_EVENTQ_PROD` (page 1): written by the SMMU.
pub const EVENTQ_PROD: usize = 0x1_00A8;
/// `SMMU_EVENTQ_CONS` (page 1): written by software after reading events.
pub const EVENTQ_CONS: usize = 0x1_00AC;

/// `CR0.SMMUEN`.
pub const CR0_SMMUEN: u32 = 1 << 0;
/// `CR0.EVENTQEN`.
pub const CR0_EVENTQEN: u32 = 1 << 2;
/// `CR0.CMDQEN`.
pub const CR0_CMDQEN: u32 = 1 << 3;
/// `GBPA.ABORT`: abort incoming transactions while the SMMU is disabled.
pub const GBPA_ABORT: u32 = 1 << 20;
/// `GBPA.UPDATE`: set with a new value, cleared by the SMMU when it took effect.
pub const GBPA_UPDATE: u32 = 1 << 31;
/// `GERROR.CMDQ_ERR`.
pub const GERROR_CMDQ_ERR: u32 = 1 << 0;
/// `CR1`: tables and queues inner shareable (SH = 3), inner and outer write-back (IC = OC = 1).
pub const CR1_WRITE_BACK_INNER_SHAREABLE: u32 =
    (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1;
/// `CR2`: RECINVSID (record invalid StreamIDs) and PTM (ignore broadcast TLB maintenance: our ASID
/// is not a CPU ASID).
pub const CR2_RECINVSID_PTM: u32 = (1 << 1) | (1 << 2);
/// `RA` bit of the base registers: read-allocate hint.
pub const BASE_READ_ALLOCATE: u64 = 1 << 62;

/// What the hypervisor needs of an SMMU, read from its ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// StreamID bits (`IDR1.SIDSIZE`).
    pub stream_id_bits: u32,
    /// Largest command queue, log2 entries (`IDR1.CMDQS`).
    pub command_queue_log2: u32,
    /// Largest event queue, log2 entries (`IDR1.EVENTQS`).
    pub event_queue_log2: u32,
    /// Output address bits (`IDR5.OAS`).
    pub output_address_bits: u32,
}

/// A feature the hypervisor relies on and the SMMU lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingFeature {
    /// Stage-1 translation (`IDR0.S1P`): QEMU 7.2 has only stage 1, so the hypervisor uses it.
    Stage1,
    /// The AArch64 table format (`IDR0.TTF`).
    Aarch64Tables,
    /// Two-level stream tables (`IDR0.ST_LEVEL`).
    TwoLevelStreamTable,
    /// Little-endian table walks (`IDR0.TTENDIAN`).
    LittleEndian,
    /// The 4 KiB granule (`IDR5.GRAN4K`).
    Granule4K,
    /// At least 40 output address bits (`IDR5.OAS`): DRAM on QEMU `virt` reaches up to 2^39.
    OutputAddressSize,
    /// At least 8 StreamID bits (`IDR1.SIDSIZE`): one PCIe bus.
    StreamIdSize,
}

impl Features {
    /// Decodes `IDR0`, `IDR1` and `IDR5`; names the first missing feature.
    pub fn from_id_registers(idr0: u32, idr1: u32, idr5: u32) -> Result<Self, MissingFeature> {
        let field = |value: u32, shift: u32, bits: u32| (value >> shift) & ((1 << bits) - 1);
        if field(idr0, 1, 1) == 0 {
            return Err(MissingFeature::Stage1);
        }
        if field(idr0, 2, 2) & 0b10 == 0 {
            return Err(MissingFeature::Aarch64Tables);
        }
        if field(idr0, 27, 2) == 0 {
            return Err(MissingFeature::TwoLevelStreamTable);
        }
        if field(idr0, 21, 2) == 0b11 {
            return Err(MissingFeature::LittleEndian);
        }
        if field(idr5, 4, 1) == 0 {
            return Err(MissingFeature::Granule4K);
        }
        let output_address_bits = match field(idr5, 0, 3) {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        };
        if output_address_bits < 40 {
            return Err(MissingFeature::OutputAddressSize);
        }
        let stream_id_bits = field(idr1, 0, 6);
        if stream_id_bits < 8 {
            return Err(MissingFeature::StreamIdSize);
        }
        Ok(Self {
            stream_id_bits,
            command_queue_log2: field(idr1, 21, 5),
            event_queue_log2: field(idr1, 16, 5),
            output_address_bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's ID registers: S1P, TTF = AArch64, COHACC, ASID16, TTENDIAN = little, STALL_MODEL
    /// = 1, TERM_MODEL, ST_LEVEL = 2-level; SIDSIZE 16, EVENTQS 19, CMDQS 19; GRAN4K, GRAN64K, OAS 44.
    pub const QEMU_IDR0: u32 =
        (1 << 1) | (2 << 2) | (1 << 4) | (1 << 12) | (2 << 21) | (1 << 24) | (1 << 26) | (1 << 27);
    pub const QEMU_IDR1: u32 = 16 | (19 << 16) | (19 << 21);
    pub const QEMU_IDR5: u32 = 4 | (1 << 4) | (1 << 6);

    #[test]
    fn qemu_features() {
        assert_eq!(
            Features::from_id_registers(QEMU_IDR0, QEMU_IDR1, QEMU_IDR5),
            Ok(Features {
                stream_id_bits: 16,
                command_queue_log2: 19,
                event_queue_log2: 19,
                output_address_bits: 44,
            })
        );
    }

    #[test]
    fn missing_features_are_named() {
        let table = [
            (
                QEMU_IDR0 & !(1 << 1),
                QEMU_IDR1,
                QEMU_IDR5,
                MissingFeature::Stage1,
            ),
            (
                QEMU_IDR0 & !(3 << 2),
                QEMU_IDR1,
                QEMU_IDR5,
                MissingFeature::Aarch64Tables,
            ),
            (
                QEMU_IDR0 & !(3 << 27),
                QEMU_IDR1,
                QEMU_IDR5,
                MissingFeature::TwoLevelStreamTable,
            ),
            (
                QEMU_IDR0 | (3 << 21),
                QEMU_IDR1,
                QEMU_IDR5,
                MissingFeature::LittleEndian,
            ),
            (
                QEMU_IDR0,
                QEMU_IDR1,
                QEMU_IDR5 & !(1 << 4),
                MissingFeature::Granule4K,
            ),
            (
                QEMU_IDR0,
                QEMU_IDR1,
                (QEMU_IDR5 & !7) | 1,
                MissingFeature::OutputAddressSize,
            ),
            (
                QEMU_IDR0,
                (QEMU_IDR1 & !0x3F) | 7,
                QEMU_IDR5,
                MissingFeature::StreamIdSize,
            ),
        ];
        for (idr0, idr1, idr5, missing) in table {
            assert_eq!(Features::from_id_registers(idr0, idr1, idr5), Err(missing));
        }
    }
}
