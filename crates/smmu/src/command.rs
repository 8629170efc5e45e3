//! Commands of the SMMUv3 command queue (Arm IHI 0070, chapter 4): each is two 64-bit words with
//! the opcode in bits 7:0 of the first.

/// `CMD_CFGI_STE`.
pub const OPCODE_CFGI_STE: u8 = 0x03;
/// `CMD_CFGI_ALL` (`CMD_CFGI_STE_RANGE` with Range = 31).
pub const OPCODE_CFGI_ALL: u8 = 0x04;
/// `CMD_CFGI_CD`.
pub const OPCODE_CFGI_CD: u8 = 0x05;
/// `CMD_CFGI_CD_ALL`.
pub const OPCODE_CFGI_CD_ALL: u8 = 0x06;
/// `CMD_TLBI_NH_ALL`.
pub const OPCODE_TLBI_NH_ALL: u8 = 0x10;
/// `CMD_TLBI_NH_ASID`.
pub const OPCODE_TLBI_NH_ASID: u8 = 0x11;
/// `CMD_TLBI_NH_VA`.
pub const OPCODE_TLBI_NH_VA: u8 = 0x12;
/// `CMD_TLBI_EL2_ALL`.
pub const OPCODE_TLBI_EL2_ALL: u8 = 0x20;
/// `CMD_TLBI_NSNH_ALL`.
pub const OPCODE_TLBI_NSNH_ALL: u8 = 0x30;
/// `CMD_SYNC`.
pub const OPCODE_SYNC: u8 = 0x46;

/// A command the hypervisor issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Drop cached configuration (STE) of one stream; `leaf`: only the STE, not the L1 descriptor.
    ConfigureStream {
        /// The StreamID.
        stream: u32,
        /// Only the STE itself changed.
        leaf: bool,
    },
    /// Drop every cached STE and CD.
    ConfigureAll,
    /// Drop the cached context descriptor `substream` of `stream`.
    ConfigureContext {
        /// The StreamID.
        stream: u32,
        /// The SubstreamID.
        substream: u32,
        /// Only the CD itself changed.
        leaf: bool,
    },
    /// Drop every cached context descriptor of `stream`.
    ConfigureAllContexts {
        /// The StreamID.
        stream: u32,
    },
    /// Drop every stage-1 (non-hypervisor) TLB entry of `vmid` (0 without stage 2).
    InvalidateAllStage1 {
        /// The VMID.
        vmid: u16,
    },
    /// Drop every TLB entry of `asid`.
    InvalidateAsid {
        /// The ASID.
        asid: u16,
        /// The VMID (0 without stage 2).
        vmid: u16,
    },
    /// Drop the TLB entries of `asid` for the page at `address` (`leaf`: only last-level entries).
    InvalidateAddress {
        /// The ASID.
        asid: u16,
        /// The VMID (0 without stage 2).
        vmid: u16,
        /// The input address (page aligned).
        address: u64,
        /// Only leaf entries changed (no table was freed or replaced).
        leaf: bool,
    },
    /// Drop every EL2 TLB entry.
    InvalidateAllEl2,
    /// Drop every Non-secure non-hypervisor TLB entry, of every VMID.
    InvalidateAllNonSecure,
    /// Completes when every earlier command has completed, including the effect of invalidations on
    /// transactions in flight. No interrupt, no MSI: software polls `CMDQ_CONS`.
    Sync,
}

impl Command {
    /// The two words of the command as the queue holds them.
    pub fn encode(self) -> [u64; 2] {
        let opcode = |opcode: u8| u64::from(opcode);
        let stream = |stream: u32| u64::from(stream) << 32;
        match self {
            Self::ConfigureStream { stream: sid, leaf } => {
                [opcode(OPCODE_CFGI_STE) | stream(sid), u64::from(leaf)]
            }
            // Range 31: every StreamID.
            Self::ConfigureAll => [opcode(OPCODE_CFGI_ALL), 31],
            Self::ConfigureContext {
                stream: sid,
                substream,
                leaf,
            } => [
                opcode(OPCODE_CFGI_CD) | (u64::from(substream & 0xF_FFFF) << 12) | stream(sid),
                u64::from(leaf),
            ],
            Self::ConfigureAllContexts { stream: sid } => {
                [opcode(OPCODE_CFGI_CD_ALL) | stream(sid), 0]
            }
            Self::InvalidateAllStage1 { vmid } => {
                [opcode(OPCODE_TLBI_NH_ALL) | (u64::from(vmid) << 32), 0]
            }
            Self::InvalidateAsid { asid, vmid } => [
                opcode(OPCODE_TLBI_NH_ASID) | (u64::from(vmid) << 32) | (u64::from(asid) << 48),
                0,
            ],
            Self::InvalidateAddress {
                asid,
                vmid,
                address,
                leaf,
            } => [
                opcode(OPCODE_TLBI_NH_VA) | (u64::from(vmid) << 32) | (u64::from(asid) << 48),
                (address & !0xFFF) | u64::from(leaf),
            ],
            Self::InvalidateAllEl2 => [opcode(OPCODE_TLBI_EL2_ALL), 0],
            Self::InvalidateAllNonSecure => [opcode(OPCODE_TLBI_NSNH_ALL), 0],
            // CS = 0 (no signal): completion is seen in CMDQ_CONS.
            Self::Sync => [opcode(OPCODE_SYNC), 0],
        }
    }

    /// Decodes the commands [`Self::encode`] produces (for fakes and diagnostics).
    pub fn decode(words: [u64; 2]) -> Option<Self> {
        let stream = (words[0] >> 32) as u32;
        let vmid = ((words[0] >> 32) & 0xFFFF) as u16;
        let asid = (words[0] >> 48) as u16;
        let leaf = words[1] & 1 != 0;
        Some(match (words[0] & 0xFF) as u8 {
            OPCODE_CFGI_STE => Self::ConfigureStream { stream, leaf },
            OPCODE_CFGI_ALL if words[1] & 0x1F == 31 => Self::ConfigureAll,
            OPCODE_CFGI_CD => Self::ConfigureContext {
                stream,
                substream: ((words[0] >> 12) & 0xF_FFFF) as u32,
                leaf,
            },
            OPCODE_CFGI_CD_ALL => Self::ConfigureAllContexts { stream },
            OPCODE_TLBI_NH_ALL => Self::InvalidateAllStage1 { vmid },
            OPCODE_TLBI_NH_ASID => Self::InvalidateAsid { asid, vmid },
            OPCODE_TLBI_NH_VA => Self::InvalidateAddress {
                asid,
                vmid,
                address: words[1] & !0xFFF,
                leaf,
            },
            OPCODE_TLBI_EL2_ALL => Self::InvalidateAllEl2,
            OPCODE_TLBI_NSNH_ALL => Self::InvalidateAllNonSecure,
            OPCODE_SYNC => Self::Sync,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field positions from the SMMUv3 specification (IHI 0070, 4.3 and 4.4): opcode [7:0]; SID
    /// [63:32]; SSID [31:12]; Leaf word 1 bit 0; Range word 1 [4:0]; VMID [47:32]; ASID [63:48];
    /// Address word 1 [63:12]; CMD_SYNC CS [13:12] = 0.
    #[test]
    fn encodings_match_the_specification() {
        let table: [(Command, [u64; 2]); 10] = [
            (
                Command::ConfigureStream {
                    stream: 0x0108,
                    leaf: true,
                },
                [0x0000_0108_0000_0003, 1],
            ),
            (Command::ConfigureAll, [0x04, 31]),
            (
                Command::ConfigureContext {
                    stream: 0x10,
                    substream: 3,
                    leaf: true,
                },
                [0x0000_0010_0000_3005, 1],
            ),
            (
                Command::ConfigureAllContexts { stream: 0xFFFF },
                [0x0000_FFFF_0000_0006, 0],
            ),
            (Command::InvalidateAllStage1 { vmid: 0 }, [0x10, 0]),
            (
                Command::InvalidateAsid { asid: 1, vmid: 0 },
                [0x0001_0000_0000_0011, 0],
            ),
            (
                Command::InvalidateAddress {
                    asid: 1,
                    vmid: 2,
                    address: 0x4400_1000,
                    leaf: true,
                },
                [0x0001_0002_0000_0012, 0x4400_1001],
            ),
            (Command::InvalidateAllEl2, [0x20, 0]),
            (Command::InvalidateAllNonSecure, [0x30, 0]),
            (Command::Sync, [0x46, 0]),
        ];
        for (command, words) in table {
            assert_eq!(command.encode(), words, "{command:?}");
            assert_eq!(Command::decode(words), Some(command), "{words:x?}");
        }
        assert_eq!(Command::decode([0xFF, 0]), None);
    }
}
