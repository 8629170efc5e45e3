//! The reasons an operation on a stage-2 table can fail.

use core::fmt;

/// Why a stage-2 operation was refused. Every error leaves the table exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// An IPA, PA or size is not a multiple of [`PAGE_SIZE`](crate::PAGE_SIZE).
    NotAligned,
    /// The size is zero.
    ZeroSize,
    /// The range ends beyond the IPA size (or the output range beyond the PA size), or the
    /// address arithmetic overflows.
    OutOfRange,
    /// The pool cannot supply the table pages the change needs.
    OutOfTableMemory {
        /// Table pages the change would allocate.
        needed: usize,
        /// Table pages the pool could supply.
        available: usize,
    },
    /// The annotation's metadata does not fit in [`Annotation::METADATA_BITS`](crate::Annotation::METADATA_BITS).
    AnnotationTooWide,
    /// The owner id does not fit in 3 bits.
    OwnerOutOfRange,
    /// An annotation must name an owner other than [`OwnerId::TABLE_OWNER`](crate::OwnerId::TABLE_OWNER)
    /// (owner 0 means "no annotation": use `unmap`).
    AnnotationWithoutOwner,
    /// `set_page_state` reached an IPA that has no valid mapping.
    NotMapped {
        /// The first IPA found without a valid mapping.
        ipa: u64,
    },
    /// The PARange field of ID_AA64MMFR0_EL1 holds a reserved value.
    UnsupportedPaRange(u8),
    /// The VMID does not fit in the VMID width the geometry was configured with.
    VmidTooWide,
    /// The pool handed out a table page whose physical address does not fit a descriptor
    /// (bits `[47:12]`); the page was returned and nothing changed.
    TableAddressOutOfRange,
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAligned => write!(formatter, "address or size not aligned to 4 KiB"),
            Self::ZeroSize => write!(formatter, "size is zero"),
            Self::OutOfRange => write!(formatter, "range beyond the IPA or PA size"),
            Self::OutOfTableMemory { needed, available } => write!(
                formatter,
                "out of table memory: {needed} pages needed, {available} available"
            ),
            Self::AnnotationTooWide => write!(formatter, "annotation metadata too wide"),
            Self::OwnerOutOfRange => write!(formatter, "owner id does not fit in 3 bits"),
            Self::AnnotationWithoutOwner => write!(formatter, "annotation needs a non-zero owner"),
            Self::NotMapped { ipa } => write!(formatter, "IPA {ipa:#x} is not mapped"),
            Self::UnsupportedPaRange(value) => write!(formatter, "reserved PARange value {value}"),
            Self::VmidTooWide => write!(formatter, "VMID wider than the configured VMID width"),
            Self::TableAddressOutOfRange => {
                write!(formatter, "table page address does not fit a descriptor")
            }
        }
    }
}

impl core::error::Error for Stage2Error {}
