//! What a stage-2 descriptor says, and how it is encoded.
//!
//! # Valid descriptors (bit 0 = 1), VMSAv8-64 stage 2, 4 KiB granule, 48-bit output
//!
//! | bits    | table (levels 0-2) | block (levels 1-2) / page (level 3)                        |
//! |---------|--------------------|------------------------------------------------------------|
//! | `[1:0]`   | `0b11`             | block `0b01`, page `0b11`                                  |
//! | `[5:2]`   | 0                  | MemAttr: Normal WB/WB `0b1111`, Device-nGnRE `0b0001`       |
//! | `[7:6]`   | 0                  | S2AP: bit 6 read, bit 7 write                              |
//! | `[9:8]`   | 0                  | SH: `0b11` inner shareable                                 |
//! | `[10]`    | 0                  | AF = 1 (no access-flag faults)                             |
//! | `[47:12]` | next-level table PA| output PA (`[47:30]` level 1, `[47:21]` level 2, `[47:12]` level 3) |
//! | `[54]`    | 0                  | XN (bit 53 stays 0: no FEAT_XNX distinction)               |
//! | `[56:55]` | 0                  | page state (software bits): `00` owned, `01` shared-owned, `10` shared-borrowed |
//! | others  | 0                  | 0                                                          |
//!
//! # Invalid descriptors (bit 0 = 0)
//!
//! Hardware ignores every other bit, so they carry the annotation:
//!
//! | bits    | meaning                                                            |
//! |---------|--------------------------------------------------------------------|
//! | `[0]`     | 0 (invalid)                                                        |
//! | `[1]`     | 0                                                                  |
//! | `[4:2]`   | owner id (0 = no annotation: the descriptor is then all zero)       |
//! | `[60:5]`  | metadata, 56 bits ([`Annotation::METADATA_BITS`])                  |
//! | `[63:61]` | 0 in every stored descriptor (used only inside one operation, see the table module) |
//!
//! An invalid descriptor may sit at any level: one annotation at level 1 covers 1 GiB.

use crate::Stage2Error;

/// Bytes mapped by one level-3 descriptor.
pub use abi::PAGE_SIZE;
/// Bytes mapped by one level-2 block descriptor.
pub const BLOCK_SIZE_2M: u64 = 2 << 20;
/// Bytes mapped by one level-1 block descriptor.
pub const BLOCK_SIZE_1G: u64 = 1 << 30;
/// Descriptors in one 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;

pub(crate) const VALID: u64 = 1 << 0;
pub(crate) const TABLE_OR_PAGE: u64 = 1 << 1;
pub(crate) const OUTPUT_MASK: u64 = 0x0000_ffff_ffff_f000;
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_MASK: u64 = 0b1111 << MEMATTR_SHIFT;
const MEMATTR_NORMAL_WRITE_BACK: u64 = 0b1111;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const SH_INNER_SHAREABLE: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const EXECUTE_NEVER: u64 = 1 << 54;
const STATE_SHIFT: u32 = 55;
/// The software bits holding the [`PageState`] of a valid leaf.
pub(crate) const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
const OWNER_SHIFT: u32 = 2;
pub(crate) const METADATA_SHIFT: u32 = 5;

/// log2 of the bytes one descriptor at `level` maps (level 3: 12, level 0: 39).
pub(crate) const fn level_shift(level: u8) -> u8 {
    12 + 9 * (3 - level)
}

/// Bytes one descriptor at `level` maps.
pub(crate) const fn level_span(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Identifies the component an invalid (annotated) entry belongs to; 3 bits, as in pKVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(u8);

impl OwnerId {
    /// The table's own owner (e.g. the host in the host's stage 2): means "no annotation".
    pub const TABLE_OWNER: Self = Self(0);
    /// The largest owner id that fits in the descriptor.
    pub const MAX: u8 = 7;

    /// An owner id, or [`Stage2Error::OwnerOutOfRange`] above [`Self::MAX`].
    pub const fn new(value: u8) -> Result<Self, Stage2Error> {
        if value > Self::MAX {
            Err(Stage2Error::OwnerOutOfRange)
        } else {
            Ok(Self(value))
        }
    }

    /// The numeric id.
    pub const fn value(self) -> u8 {
        self.0
    }
}

/// What an invalid entry records: who owns the page now, and owner-defined metadata
/// (e.g. VM handle and guest frame number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Annotation {
    /// The new owner; never [`OwnerId::TABLE_OWNER`] in an annotation built by [`Annotation::new`].
    pub owner: OwnerId,
    /// At most [`Annotation::METADATA_BITS`] bits.
    pub metadata: u64,
}

impl Annotation {
    /// Width of the metadata field (descriptor bits `[60:5]`).
    pub const METADATA_BITS: u32 = 56;
    /// The largest metadata value.
    pub const MAX_METADATA: u64 = (1 << Self::METADATA_BITS) - 1;

    /// An annotation, or an error when the owner is 0 or the metadata is too wide.
    pub const fn new(owner: OwnerId, metadata: u64) -> Result<Self, Stage2Error> {
        let annotation = Self { owner, metadata };
        match annotation.validate() {
            Ok(()) => Ok(annotation),
            Err(error) => Err(error),
        }
    }

    /// Checks the invariants [`new`](Self::new) enforces (fields are public, so `annotate`
    /// checks again).
    pub const fn validate(&self) -> Result<(), Stage2Error> {
        if self.owner.0 == 0 {
            Err(Stage2Error::AnnotationWithoutOwner)
        } else if self.owner.0 > OwnerId::MAX {
            Err(Stage2Error::OwnerOutOfRange)
        } else if self.metadata > Self::MAX_METADATA {
            Err(Stage2Error::AnnotationTooWide)
        } else {
            Ok(())
        }
    }

    /// The invalid descriptor carrying this annotation (call only on a validated annotation).
    pub(crate) const fn encode(&self) -> u64 {
        ((self.owner.0 as u64) << OWNER_SHIFT) | (self.metadata << METADATA_SHIFT)
    }

    /// Reads an invalid descriptor; `None` for the all-zero "no annotation" descriptor.
    pub(crate) const fn decode(descriptor: u64) -> Option<Self> {
        let owner = ((descriptor >> OWNER_SHIFT) & 0b111) as u8;
        let metadata = (descriptor >> METADATA_SHIFT) & Self::MAX_METADATA;
        if owner == 0 && metadata == 0 {
            None
        } else {
            Some(Self {
                owner: OwnerId(owner),
                metadata,
            })
        }
    }
}

/// pKVM's page states, kept in the software bits of valid leaf descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageState {
    /// The table's owner owns the page exclusively.
    Owned,
    /// The owner lent the page to another component and still owns it.
    SharedOwned,
    /// This table maps a page another component owns and shares.
    SharedBorrowed,
}

impl PageState {
    pub(crate) const fn encode(self) -> u64 {
        let bits = match self {
            Self::Owned => 0b00,
            Self::SharedOwned => 0b01,
            Self::SharedBorrowed => 0b10,
        };
        bits << STATE_SHIFT
    }

    /// `0b11` is never written; it reads as `SharedBorrowed` (the state granting least).
    pub(crate) const fn decode(descriptor: u64) -> Self {
        match (descriptor & STATE_MASK) >> STATE_SHIFT {
            0b00 => Self::Owned,
            0b01 => Self::SharedOwned,
            _ => Self::SharedBorrowed,
        }
    }
}

/// The memory type a mapping gives the guest (combined with its stage-1 attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal memory, inner and outer write-back cacheable.
    Normal,
    /// Device-nGnRE memory (MMIO).
    Device,
}

/// Stage-2 access permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Reads allowed (S2AP bit 6).
    pub read: bool,
    /// Writes allowed (S2AP bit 7).
    pub write: bool,
    /// Instruction fetches allowed (XN clear).
    pub execute: bool,
}

impl Permissions {
    /// No access.
    pub const NONE: Self = Self::new(false, false, false);
    /// Read only.
    pub const READ_ONLY: Self = Self::new(true, false, false);
    /// Read and write, no execution.
    pub const READ_WRITE: Self = Self::new(true, true, false);
    /// Read and execute.
    pub const READ_EXECUTE: Self = Self::new(true, false, true);
    /// Everything.
    pub const READ_WRITE_EXECUTE: Self = Self::new(true, true, true);

    /// Permissions from the three flags.
    pub const fn new(read: bool, write: bool, execute: bool) -> Self {
        Self {
            read,
            write,
            execute,
        }
    }
}

/// Everything a valid leaf descriptor says besides its output address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// Memory type (MemAttr).
    pub memory: MemoryType,
    /// Access permissions (S2AP, XN).
    pub permissions: Permissions,
    /// pKVM page state (software bits).
    pub state: PageState,
}

impl Attributes {
    /// Normal memory, read/write/execute, owned: how a host's identity map maps RAM.
    pub const NORMAL_OWNED: Self = Self {
        memory: MemoryType::Normal,
        permissions: Permissions::READ_WRITE_EXECUTE,
        state: PageState::Owned,
    };
    /// Device memory, read/write, never executable, owned: MMIO.
    pub const DEVICE_OWNED: Self = Self {
        memory: MemoryType::Device,
        permissions: Permissions::READ_WRITE,
        state: PageState::Owned,
    };

    /// The same attributes with another page state.
    #[must_use]
    pub const fn with_state(mut self, state: PageState) -> Self {
        self.state = state;
        self
    }

    /// The attribute bits of a leaf descriptor (no type bits, no output address).
    pub(crate) const fn encode(&self) -> u64 {
        let mut bits = ACCESS_FLAG | SH_INNER_SHAREABLE | self.state.encode();
        bits |= match self.memory {
            MemoryType::Normal => MEMATTR_NORMAL_WRITE_BACK << MEMATTR_SHIFT,
            MemoryType::Device => MEMATTR_DEVICE_NGNRE << MEMATTR_SHIFT,
        };
        if self.permissions.read {
            bits |= S2AP_READ;
        }
        if self.permissions.write {
            bits |= S2AP_WRITE;
        }
        if !self.permissions.execute {
            bits |= EXECUTE_NEVER;
        }
        bits
    }

    /// Reads the attributes of a valid leaf descriptor.
    pub(crate) const fn decode(descriptor: u64) -> Self {
        let memory = if (descriptor & MEMATTR_MASK) >> MEMATTR_SHIFT == MEMATTR_NORMAL_WRITE_BACK {
            MemoryType::Normal
        } else {
            MemoryType::Device
        };
        Self {
            memory,
            permissions: Permissions {
                read: descriptor & S2AP_READ != 0,
                write: descriptor & S2AP_WRITE != 0,
                execute: descriptor & EXECUTE_NEVER == 0,
            },
            state: PageState::decode(descriptor),
        }
    }
}

/// What [`walk`](crate::Stage2Table::walk) finds for an IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// No mapping and no annotation (an all-zero invalid descriptor, or outside the IPA space).
    Unmapped,
    /// An invalid descriptor recording another owner.
    Annotated(Annotation),
    /// A valid translation.
    Mapped {
        /// The PA the looked-up IPA translates to (for a visited leaf: the PA of its first byte).
        output: u64,
        /// Memory type, permissions and page state.
        attributes: Attributes,
        /// Bytes the descriptor maps: [`PAGE_SIZE`], [`BLOCK_SIZE_2M`] or [`BLOCK_SIZE_1G`].
        block_size: u64,
    },
}

/// The leaf descriptor (block or page) at `level` mapping `output` with encoded `attributes`.
pub(crate) const fn leaf_descriptor(level: u8, output: u64, attribute_bits: u64) -> u64 {
    let type_bits = if level == 3 {
        VALID | TABLE_OR_PAGE
    } else {
        VALID
    };
    (output & OUTPUT_MASK) | attribute_bits | type_bits
}

/// The table descriptor pointing at the next-level table at `table_address`.
pub(crate) const fn table_descriptor(table_address: u64) -> u64 {
    (table_address & OUTPUT_MASK) | VALID | TABLE_OR_PAGE
}

/// Whether `descriptor` at `level` points to a next-level table.
pub(crate) const fn is_table(descriptor: u64, level: u8) -> bool {
    level < 3 && descriptor & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE
}

/// The attribute bits of a valid leaf (everything except type bits and output address).
pub(crate) const fn leaf_attribute_bits(descriptor: u64) -> u64 {
    descriptor & !(OUTPUT_MASK | VALID | TABLE_OR_PAGE)
}

/// Decodes a descriptor found at `level` that is not a table descriptor.
pub(crate) const fn decode_leaf(descriptor: u64, level: u8) -> Entry {
    if descriptor & VALID == 0 {
        match Annotation::decode(descriptor) {
            Some(annotation) => Entry::Annotated(annotation),
            None => Entry::Unmapped,
        }
    } else {
        Entry::Mapped {
            output: descriptor & OUTPUT_MASK,
            attributes: Attributes::decode(descriptor),
            block_size: level_span(level),
        }
    }
}
