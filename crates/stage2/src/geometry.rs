//! Address sizes, starting level and the VTCR_EL2 value, derived from the CPU's PA range.

use crate::{Stage2Error, descriptor::level_shift};

/// The largest PA/IPA size this crate supports: 48 bits. 52-bit output addresses with a 4 KiB
/// granule need FEAT_LPA2's different descriptor format, which this crate does not implement.
pub const MAX_ADDRESS_BITS: u8 = 48;

/// The most root tables the architecture lets a stage-2 walk concatenate at its starting level.
const MAX_CONCATENATED_ROOT_TABLES: u64 = 16;

/// The shape of a stage-2 translation: IPA/PA sizes, starting level and root table size.
///
/// Derived from ID_AA64MMFR0_EL1.PARange: the IPA size equals the PA size (the host's stage 2
/// is an identity map, so it must be able to name every physical address), capped at
/// [`MAX_ADDRESS_BITS`].
///
/// The starting level is the *lowest number of levels* that can cover the IPA size when up to
/// 16 tables are concatenated at the root (the same rule Linux KVM uses): fewer levels mean
/// shorter walks, at the cost of a larger root for 32-, 40- and 42-bit PA ranges.
///
/// | PA bits | T0SZ | start level | root entries | root pages | SL0 |
/// |---------|------|-------------|--------------|------------|-----|
/// | 32      | 32   | 2           | 2048         | 4          | 0   |
/// | 36      | 28   | 1           | 64           | 1          | 1   |
/// | 40      | 24   | 1           | 1024         | 2          | 1   |
/// | 42      | 22   | 1           | 4096         | 8          | 1   |
/// | 44      | 20   | 0           | 32           | 1          | 2   |
/// | 48      | 16   | 0           | 512          | 1          | 2   |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pa_range: u8,
    address_bits: u8,
    start_level: u8,
    vmid_16_bit: bool,
}

impl Geometry {
    /// Builds the geometry from the PARange field (ID_AA64MMFR0_EL1 bits `[3:0]`). Values 6
    /// (52 bits) and 7 (56 bits) are capped to 48 bits; reserved values are an error.
    /// VMIDs are 8 bits wide until [`with_16_bit_vmid`](Self::with_16_bit_vmid) says otherwise.
    pub fn from_pa_range(pa_range: u8) -> Result<Self, Stage2Error> {
        let (pa_range, address_bits) = match pa_range {
            0 => (0, 32),
            1 => (1, 36),
            2 => (2, 40),
            3 => (3, 42),
            4 => (4, 44),
            5..=7 => (5, MAX_ADDRESS_BITS),
            reserved => return Err(Stage2Error::UnsupportedPaRange(reserved)),
        };
        // Fewest levels first: the highest starting level whose root, concatenated, still fits.
        let start_level = [2u8, 1]
            .into_iter()
            .find(|&level| {
                let root_entries = 1u64 << (address_bits - level_shift(level));
                root_entries <= 512 * MAX_CONCATENATED_ROOT_TABLES
            })
            .unwrap_or(0);
        Ok(Self {
            pa_range,
            address_bits,
            start_level,
            vmid_16_bit: false,
        })
    }

    /// Builds the geometry from the whole ID_AA64MMFR0_EL1 value.
    pub fn from_id_aa64mmfr0_el1(register: u64) -> Result<Self, Stage2Error> {
        // Bits [3:0]; the mask makes the conversion lossless.
        Self::from_pa_range((register & 0xf) as u8)
    }

    /// Selects 16-bit VMIDs (VTCR_EL2.VS); only valid when ID_AA64MMFR1_EL1.VMIDBits says so.
    #[must_use]
    pub const fn with_16_bit_vmid(mut self, enabled: bool) -> Self {
        self.vmid_16_bit = enabled;
        self
    }

    /// Size of the physical address space in bits (after capping).
    pub const fn pa_bits(&self) -> u8 {
        self.address_bits
    }

    /// Size of the intermediate physical address space in bits (equal to [`pa_bits`](Self::pa_bits)).
    pub const fn ipa_bits(&self) -> u8 {
        self.address_bits
    }

    /// Size of the IPA space in bytes.
    pub const fn ipa_size(&self) -> u64 {
        1 << self.address_bits
    }

    /// The translation level the walk starts at (0, 1 or 2).
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Number of descriptors in the (possibly concatenated) root table.
    pub const fn root_entries(&self) -> usize {
        1 << (self.address_bits - level_shift(self.start_level))
    }

    /// Number of concatenated 4 KiB pages the root table occupies (1, 2, 4 or 8).
    pub const fn root_table_pages(&self) -> usize {
        self.root_entries().div_ceil(512)
    }

    /// Whether VMIDs are 16 bits wide.
    pub const fn vmid_16_bit(&self) -> bool {
        self.vmid_16_bit
    }

    /// The largest VMID the configured width allows.
    pub const fn max_vmid(&self) -> u16 {
        if self.vmid_16_bit { u16::MAX } else { 0xff }
    }

    /// VTCR_EL2 for this geometry: T0SZ, SL0, inner and outer write-back write-allocate
    /// cacheable walks, inner shareable, 4 KiB granule, PS = the (capped) PA range, VS for
    /// 16-bit VMIDs, and the RES1 bit 31. Hardware access/dirty flag updates stay off.
    pub const fn vtcr_el2(&self) -> u64 {
        let t0sz = 64 - self.address_bits as u64;
        let sl0 = 2 - self.start_level as u64;
        let mut value = t0sz
            | (sl0 << VTCR_SL0_SHIFT)
            | (WRITE_BACK_WRITE_ALLOCATE << VTCR_IRGN0_SHIFT)
            | (WRITE_BACK_WRITE_ALLOCATE << VTCR_ORGN0_SHIFT)
            | (INNER_SHAREABLE << VTCR_SH0_SHIFT)
            | (GRANULE_4K << VTCR_TG0_SHIFT)
            | ((self.pa_range as u64) << VTCR_PS_SHIFT)
            | VTCR_RES1;
        if self.vmid_16_bit {
            value |= VTCR_VS;
        }
        value
    }
}

/// VTCR_EL2.SL0, bits `[7:6]`.
pub const VTCR_SL0_SHIFT: u32 = 6;
/// VTCR_EL2.IRGN0, bits `[9:8]`.
pub const VTCR_IRGN0_SHIFT: u32 = 8;
/// VTCR_EL2.ORGN0, bits `[11:10]`.
pub const VTCR_ORGN0_SHIFT: u32 = 10;
/// VTCR_EL2.SH0, bits `[13:12]`.
pub const VTCR_SH0_SHIFT: u32 = 12;
/// VTCR_EL2.TG0, bits `[15:14]`.
pub const VTCR_TG0_SHIFT: u32 = 14;
/// VTCR_EL2.PS, bits `[18:16]`.
pub const VTCR_PS_SHIFT: u32 = 16;
/// VTCR_EL2.VS (16-bit VMID), bit 19.
pub const VTCR_VS: u64 = 1 << 19;
/// VTCR_EL2 bit 31 is RES1.
pub const VTCR_RES1: u64 = 1 << 31;
const WRITE_BACK_WRITE_ALLOCATE: u64 = 0b01;
const INNER_SHAREABLE: u64 = 0b11;
const GRANULE_4K: u64 = 0b00;

/// A virtual machine identifier, tagging this table's TLB entries (VTTBR_EL2 bits `[63:48]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vmid(pub u16);
