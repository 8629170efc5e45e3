//! The redistributors' control pages, emulated: the host may wake its redistributors and read what
//! they are, but never give the GIC an LPI table (see [`crate::devices`] for why LPIs are not offered).
//!
//! Every access of the host to `RD_base` + 0..4 KiB traps (the page is never in the host's
//! stage-2); the hypervisor decodes it from the syndrome ([`MmioAccess`]), decides with
//! [`control_page_access`], and performs what is allowed on the real register.
//!
//! | register | offset | read | write |
//! |---|---|---|---|
//! | `GICR_CTLR` | 0x00 | as is | `EnableLPIs` (bit 0) forced to 0 |
//! | `GICR_TYPER` | 0x08 | `PLPIS`, `VLPIS`, `DirectLPI` cleared | ignored |
//! | `GICR_PROPBASER`, `GICR_PENDBASER` | 0x70, 0x78 | 0 | ignored |
//! | `GICR_SETLPIR`, `GICR_CLRLPIR`, `GICR_INVLPIR`, `GICR_INVALLR`, `GICR_SYNCR` | 0x40, 0x48, 0xA0, 0xB0, 0xC0 | 0 | ignored |
//! | anything else (`GICR_IIDR`, `GICR_STATUSR`, `GICR_WAKER`, ...) | | as is | as is |

/// One load or store the host made to an emulated page, from `ESR_EL2`'s instruction syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// A store (else a load).
    pub write: bool,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// The general-purpose register transferred (31: the zero register).
    pub register: u8,
    /// A load sign-extends its value.
    pub sign_extend: bool,
    /// The register is used as 64 bits (else 32).
    pub sixty_four: bool,
}

impl MmioAccess {
    /// Decodes a data abort's syndrome; `None` when it does not describe the access (`ISV` clear:
    /// a load/store pair, a vector or atomic access...), which the host then gets as an abort.
    pub fn decode(syndrome: u64) -> Option<Self> {
        const ISV: u64 = 1 << 24;
        if syndrome & ISV == 0 {
            return None;
        }
        Some(Self {
            write: syndrome & (1 << 6) != 0,
            size: 1 << ((syndrome >> 22) & 0b11),
            register: ((syndrome >> 16) & 0x1F) as u8,
            sign_extend: syndrome & (1 << 21) != 0,
            sixty_four: syndrome & (1 << 15) != 0,
        })
    }

    /// The value a load puts in its register, from the `raw` bytes read (zero-extended).
    pub fn loaded_value(&self, raw: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let value = if bits == 64 {
            raw
        } else {
            raw & ((1 << bits) - 1)
        };
        let extended = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if self.sixty_four {
            extended
        } else {
            extended & 0xFFFF_FFFF
        }
    }
}

/// What to do with one access to a redistributor's control page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlPageAction {
    /// Read the real register and give the host the value with `clear` bits cleared.
    Read {
        /// Bits the host must not see set.
        clear: u64,
    },
    /// The register reads as zero (nothing is read).
    ReadZero,
    /// Write the host's value with `clear` bits cleared.
    Write {
        /// Bits the host may not set.
        clear: u64,
    },
    /// The write is ignored.
    Ignore,
}

const GICR_CTLR: u64 = 0x00;
const GICR_TYPER: u64 = 0x08;
const ENABLE_LPIS: u64 = 1 << 0;
/// `GICR_TYPER`: `PLPIS` (0), `VLPIS` (1), `DirectLPI` (3).
const TYPER_LPI_BITS: u64 = (1 << 0) | (1 << 1) | (1 << 3);
/// The LPI registers: `SETLPIR`, `CLRLPIR`, `PROPBASER`, `PENDBASER`, `INVLPIR`, `INVALLR`, `SYNCR`
/// (each 64 bits).
const LPI_REGISTERS: [u64; 7] = [0x40, 0x48, 0x70, 0x78, 0xA0, 0xB0, 0xC0];

/// The decision for an access of `size` bytes at `offset` in a redistributor's control page.
pub fn control_page_access(offset: u64, write: bool) -> ControlPageAction {
    // The register (8-byte aligned) the access falls in.
    let register = offset & !7;
    if LPI_REGISTERS.contains(&register) {
        return if write {
            ControlPageAction::Ignore
        } else {
            ControlPageAction::ReadZero
        };
    }
    match (register, write) {
        (GICR_CTLR, true) => ControlPageAction::Write {
            clear: if offset == GICR_CTLR { ENABLE_LPIS } else { 0 },
        },
        (GICR_TYPER, true) => ControlPageAction::Ignore,
        (GICR_TYPER, false) => ControlPageAction::Read {
            // A 32-bit read of the upper half (affinity) has nothing to hide.
            clear: if offset == GICR_TYPER {
                TYPER_LPI_BITS
            } else {
                0
            },
        },
        (_, true) => ControlPageAction::Write { clear: 0 },
        (_, false) => ControlPageAction::Read { clear: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syndromes_decode_to_accesses() {
        // ISV, SAS = 3 (8 bytes), SRT = 5, SF, WnR: `str x5, [...]`.
        let store = (1 << 24) | (3 << 22) | (5 << 16) | (1 << 15) | (1 << 6);
        assert_eq!(
            MmioAccess::decode(store),
            Some(MmioAccess {
                write: true,
                size: 8,
                register: 5,
                sign_extend: false,
                sixty_four: true
            })
        );
        // `ldrsh w2, [...]`: 2 bytes, sign-extended into 32 bits.
        let load = (1 << 24) | (1 << 22) | (1 << 21) | (2 << 16);
        let access = MmioAccess::decode(load).expect("valid");
        assert_eq!(access.loaded_value(0x8001), 0xFFFF_8001);
        assert_eq!(MmioAccess::decode(store & !(1 << 24)), None);
        let byte = MmioAccess::decode((1 << 24) | (1 << 15)).expect("valid");
        assert_eq!(byte.loaded_value(0x1234), 0x34);
    }

    #[test]
    fn the_lpi_registers_are_never_reached() {
        let table = [
            (0x00, false, ControlPageAction::Read { clear: 0 }),
            (0x00, true, ControlPageAction::Write { clear: 1 }),
            (0x04, true, ControlPageAction::Write { clear: 0 }),
            (0x08, false, ControlPageAction::Read { clear: 0b1011 }),
            (0x0C, false, ControlPageAction::Read { clear: 0 }),
            (0x08, true, ControlPageAction::Ignore),
            (0x14, true, ControlPageAction::Write { clear: 0 }),
            (0x14, false, ControlPageAction::Read { clear: 0 }),
            (0x70, true, ControlPageAction::Ignore),
            (0x74, true, ControlPageAction::Ignore),
            (0x70, false, ControlPageAction::ReadZero),
            (0x78, true, ControlPageAction::Ignore),
            (0x7C, false, ControlPageAction::ReadZero),
            (0x40, true, ControlPageAction::Ignore),
            (0xA0, true, ControlPageAction::Ignore),
            (0xB0, true, ControlPageAction::Ignore),
            (0xC0, false, ControlPageAction::ReadZero),
        ];
        for (offset, write, expected) in table {
            assert_eq!(
                control_page_access(offset, write),
                expected,
                "{offset:#x} write {write}"
            );
        }
    }
}
