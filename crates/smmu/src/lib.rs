//! A hypervisor-owned Arm SMMUv3 (Arm IHI 0070) that keeps DMA inside the host's own memory.
//!
//! The hypervisor takes the SMMU before the host runs ([`Smmu::take_ownership`]): every StreamID
//! translates with stage 1 through one context descriptor and one IO page table
//! ([`IoPageTable`]) that identity-maps exactly the pages the host owns. QEMU 7.2's SMMUv3 model has
//! stage 1 only (stage 2 arrived in QEMU 8.1), so the host's devices get hypervisor-owned stage-1
//! tables instead of the stage-2 tables a real pKVM would share with the CPU. When the host loses
//! pages, [`Smmu::revoke`] unmaps them, invalidates the SMMU's TLB and waits for `CMD_SYNC` — once
//! per operation — before the caller lets the pages change hands: the DMA counterpart of the CPU's
//! TLB maintenance and the erratum 4193714 call. [`Smmu::grant`] maps pages the host gets back.
//!
//! # Memory and registers
//! Everything the SMMU reads (stream table, context descriptor, queues, IO page tables) lies in one
//! region of hypervisor memory ([`SmmuMemory`]), and every access to it or to the registers goes
//! through [`DeviceAccess`], so the whole driver runs in host tests against a fake SMMU that executes
//! the commands and walks the tables.
//!
//! The stream table is two-level: 256 level-1 descriptors (one per PCIe bus) that all point at one
//! level-2 table of 256 identical STEs, so all 2^16 StreamIDs (RIDs) translate through the host's
//! table, in 18 KiB instead of the 4 MiB of a linear table. A StreamID beyond the table aborts.
//!
//! # Why our own
//! The `smmu` crate on crates.io is a software model of an SMMU (a translation engine with `std`),
//! not a driver for one; no `no_std` SMMUv3 driver crate was found. Linux's, pKVM's and QEMU's code
//! were read to learn the programming sequence.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod command;
mod io_page_table;
mod queue;
pub mod registers;
pub mod structures;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use core::ops::Range;

pub use command::Command;
pub use io_page_table::{BLOCK_SIZE, Changed, IoPageTable, PAGE_SIZE};
pub use queue::CommandQueue;
pub use registers::{Features, MissingFeature};

use registers::{
    CR0, CR0_CMDQEN, CR0_EVENTQEN, CR0_SMMUEN, CR0ACK, CR1, CR1_WRITE_BACK_INNER_SHAREABLE, CR2,
    CR2_RECINVSID_PTM, EVENTQ_BASE, EVENTQ_CONS, EVENTQ_PROD, GBPA, GBPA_ABORT, GBPA_UPDATE,
    IRQ_CTRL, STRTAB_BASE, STRTAB_BASE_CFG,
};
use structures::{CD_BYTES, STE_BYTES};

/// How the driver reaches the SMMU: its registers, and the memory it reads (tables and queues).
pub trait DeviceAccess {
    /// Reads the 32-bit register at `offset` from the SMMU's base.
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
    /// Writes the 64-bit register at `offset`.
    fn write64(&mut self, offset: usize, value: u64);
    /// Reads the 64-bit word at physical `address` of the SMMU's memory ([`SmmuMemory`]).
    fn read_memory(&mut self, address: u64) -> u64;
    /// Writes the 64-bit word at physical `address` of the SMMU's memory.
    fn write_memory(&mut self, address: u64, value: u64);
    /// Makes every earlier [`Self::write_memory`] visible to the SMMU before any later register
    /// write (`DSB` on the CPU; the SMMU is I/O coherent).
    fn publish(&mut self);
}

/// Why the SMMU could not be taken or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    /// The SMMU lacks a feature the hypervisor relies on.
    Missing(MissingFeature),
    /// A register write did not take effect (`CR0ACK`, `GBPA.UPDATE`).
    AckTimeout {
        /// The register that did not answer.
        register: usize,
    },
    /// The memory region is too small or misaligned for the structures.
    BadMemory,
    /// An address is not page aligned.
    NotAligned {
        /// The address.
        address: u64,
    },
    /// An address is beyond the 39-bit input address space.
    OutOfRange {
        /// The address.
        address: u64,
    },
    /// The pool of IO page-table pages cannot cover the change (nothing was changed).
    OutOfTableMemory {
        /// Table pages the change needs.
        needed: u64,
        /// Table pages left.
        available: u64,
    },
    /// The command queue stayed full.
    CommandQueueTimeout,
    /// `CMD_SYNC` did not complete: invalidations may not have taken effect.
    SyncTimeout,
    /// The SMMU refused a command (`CMDQ_CONS.ERR`).
    CommandError {
        /// The error code: 1 illegal command, 2 abort on command fetch, 3 ATC invalidation timeout.
        reason: u32,
    },
}

impl core::fmt::Display for SmmuError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Missing(feature) => write!(formatter, "the SMMU lacks {feature:?}"),
            Self::AckTimeout { register } => {
                write!(formatter, "register {register:#x} did not acknowledge")
            }
            Self::BadMemory => write!(formatter, "memory too small or misaligned"),
            Self::NotAligned { address } => write!(formatter, "{address:#x} is not page aligned"),
            Self::OutOfRange { address } => {
                write!(formatter, "{address:#x} is beyond the input address space")
            }
            Self::OutOfTableMemory { needed, available } => write!(
                formatter,
                "out of IO table memory: {needed} pages needed, {available} available"
            ),
            Self::CommandQueueTimeout => write!(formatter, "the command queue stayed full"),
            Self::SyncTimeout => write!(formatter, "CMD_SYNC did not complete"),
            Self::CommandError { reason } => write!(formatter, "command refused (reason {reason})"),
        }
    }
}

impl core::error::Error for SmmuError {}

impl From<MissingFeature> for SmmuError {
    fn from(missing: MissingFeature) -> Self {
        Self::Missing(missing)
    }
}

/// The ASID of the host's context descriptor.
pub const HOST_ASID: u16 = 1;
/// Command queue: 256 commands (4 KiB).
const COMMAND_QUEUE_LOG2: u32 = 8;
/// Event queue: 128 records of 32 bytes (4 KiB).
const EVENT_QUEUE_LOG2: u32 = 7;
const EVENT_BYTES: u64 = 32;
/// Level-2 stream tables hold 256 STEs (one PCIe bus).
const SPLIT: u32 = 8;
/// Up to this many pages an invalidation goes page by page (`TLBI_NH_VA`); beyond, by ASID.
const MAX_PAGE_INVALIDATIONS: u64 = 32;

/// Where the SMMU's structures lie in one region of physical memory, 16 KiB aligned:
///
/// | offset | contents |
/// | --- | --- |
/// | 0x0000 | command queue (4 KiB) |
/// | 0x1000 | event queue (4 KiB) |
/// | 0x2000 | level-1 stream table (256 descriptors, 2 KiB) |
/// | 0x2800 | the context descriptor (64 bytes) |
/// | 0x4000 | the level-2 stream table (256 STEs, 16 KiB) |
/// | 0x8000 | IO page-table pages, to the end |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuMemory {
    /// Physical address of the region.
    pub base: u64,
    /// Its size in bytes.
    pub size: u64,
}

impl SmmuMemory {
    /// Bytes before the page-table pool.
    pub const FIXED_BYTES: u64 = 0x8000;

    fn command_queue(&self) -> u64 {
        self.base
    }
    fn event_queue(&self) -> u64 {
        self.base + 0x1000
    }
    fn level1_table(&self) -> u64 {
        self.base + 0x2000
    }
    fn context_descriptor(&self) -> u64 {
        self.base + 0x2800
    }
    fn level2_table(&self) -> u64 {
        self.base + 0x4000
    }
    fn page_table_pool(&self) -> Range<u64> {
        self.base + Self::FIXED_BYTES..self.base + self.size
    }
}

/// A translation fault (or other event) the SMMU recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Event type (0x10 `F_TRANSLATION`, 0x13 `F_PERMISSION`, 0x02 `C_BAD_STREAMID`, ...).
    pub kind: u8,
    /// The StreamID (the device's RID).
    pub stream: u32,
    /// The input address.
    pub address: u64,
    /// Whether the access was a read.
    pub read: bool,
}

/// The SMMU, owned by the hypervisor.
#[derive(Debug)]
pub struct Smmu<D: DeviceAccess> {
    device: D,
    memory: SmmuMemory,
    queue: CommandQueue,
    table: IoPageTable,
    event_cons: u32,
    /// `CMD_SYNC`s issued for ownership changes (for the log and the tests).
    syncs: u64,
}

impl<D: DeviceAccess> Smmu<D> {
    /// Takes the SMMU: aborts incoming transactions while it is reconfigured, builds the host's IO
    /// page table over `host_memory` (the pages the host owns now), points every StreamID at it,
    /// invalidates everything cached and enables translation. Fails, with the SMMU left disabled and
    /// aborting where the hardware supports `GBPA`, when the SMMU lacks a feature or does not answer.
    pub fn take_ownership(
        mut device: D,
        memory: SmmuMemory,
        host_memory: &[Range<u64>],
    ) -> Result<Self, SmmuError> {
        let features = Features::from_id_registers(
            device.read32(registers::IDR0),
            device.read32(registers::IDR1),
            device.read32(registers::IDR5),
        )?;
        if !memory.base.is_multiple_of(0x4000) || memory.size < SmmuMemory::FIXED_BYTES + PAGE_SIZE
        {
            return Err(SmmuError::BadMemory);
        }
        // Disabled first (a previous owner may have left it on), aborting while disabled.
        write_acknowledged(&mut device, 0)?;
        device.write32(GBPA, GBPA_ABORT | GBPA_UPDATE);
        wait_until(&mut device, GBPA, |value| value & GBPA_UPDATE == 0)?;

        let mut table = IoPageTable::new(&mut device, memory.page_table_pool())?;
        for range in host_memory {
            table.map(&mut device, range.clone())?;
        }
        write_words(
            &mut device,
            memory.context_descriptor(),
            &structures::context_descriptor(table.root(), HOST_ASID),
        );
        let entry = structures::stage1_stream_entry(memory.context_descriptor());
        for stream in 0..1u64 << SPLIT {
            write_words(
                &mut device,
                memory.level2_table() + stream * STE_BYTES,
                &entry,
            );
        }
        let level1_entries = 1u64 << features.stream_id_bits.min(16).saturating_sub(SPLIT);
        for bus in 0..level1_entries {
            device.write_memory(
                memory.level1_table() + bus * 8,
                structures::level1_descriptor(memory.level2_table(), SPLIT),
            );
        }
        device.publish();

        device.write32(CR1, CR1_WRITE_BACK_INNER_SHAREABLE);
        device.write32(CR2, CR2_RECINVSID_PTM);
        device.write64(
            STRTAB_BASE,
            registers::BASE_READ_ALLOCATE | memory.level1_table(),
        );
        let log2_size = features.stream_id_bits.min(16);
        device.write32(STRTAB_BASE_CFG, (1 << 16) | (SPLIT << 6) | log2_size);
        let mut queue = CommandQueue::new(memory.command_queue(), COMMAND_QUEUE_LOG2);
        device.write64(registers::CMDQ_BASE, queue.base_register());
        device.write32(registers::CMDQ_PROD, 0);
        device.write32(registers::CMDQ_CONS, 0);
        device.write64(
            EVENTQ_BASE,
            registers::BASE_READ_ALLOCATE | memory.event_queue() | u64::from(EVENT_QUEUE_LOG2),
        );
        device.write32(EVENTQ_PROD, 0);
        device.write32(EVENTQ_CONS, 0);
        device.write32(IRQ_CTRL, 0);
        write_acknowledged(&mut device, CR0_CMDQEN)?;
        // Nothing cached from a previous owner survives.
        queue.push(&mut device, Command::ConfigureAll)?;
        queue.push(&mut device, Command::InvalidateAllNonSecure)?;
        queue.push(&mut device, Command::InvalidateAllEl2)?;
        queue.sync(&mut device)?;
        write_acknowledged(&mut device, CR0_CMDQEN | CR0_EVENTQEN)?;
        write_acknowledged(&mut device, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN)?;
        Ok(Self {
            device,
            memory,
            queue,
            table,
            event_cons: 0,
            syncs: 0,
        })
    }

    /// The host loses `range`: unmap it from the IO page table, invalidate the SMMU's TLB for it,
    /// and wait for `CMD_SYNC` — one sync for the whole range. When this returns `Ok`, no device can
    /// reach the range any more. Fails changing nothing when the table memory is short; after a
    /// failed sync the range is unmapped but cached translations may survive (the caller must not
    /// hand the pages over).
    pub fn revoke(&mut self, range: Range<u64>) -> Result<Changed, SmmuError> {
        let changed = self.table.unmap(&mut self.device, range.clone())?;
        let pages = (range.end - range.start) / PAGE_SIZE;
        if changed.split || pages > MAX_PAGE_INVALIDATIONS {
            self.queue.push(
                &mut self.device,
                Command::InvalidateAsid {
                    asid: HOST_ASID,
                    vmid: 0,
                },
            )?;
        } else {
            for page in range.step_by(PAGE_SIZE as usize) {
                self.queue.push(
                    &mut self.device,
                    Command::InvalidateAddress {
                        asid: HOST_ASID,
                        vmid: 0,
                        address: page,
                        leaf: true,
                    },
                )?;
            }
        }
        self.syncs += 1;
        self.queue.sync(&mut self.device)?;
        Ok(changed)
    }

    /// The host gets `range` back: map it. No invalidation is needed (invalid entries are not
    /// cached); the barrier makes the entries visible before the host can start a transfer.
    pub fn grant(&mut self, range: Range<u64>) -> Result<Changed, SmmuError> {
        let changed = self.table.map(&mut self.device, range)?;
        self.device.publish();
        Ok(changed)
    }

    /// Where a device access to `iova` would go (a walk of the table, as the SMMU does it).
    pub fn translate(&mut self, iova: u64) -> Option<u64> {
        self.table.translate(&mut self.device, iova)
    }

    /// `CMD_SYNC`s issued by [`Self::revoke`] so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The IO page table.
    pub fn table(&self) -> &IoPageTable {
        &self.table
    }

    /// The device access (tests read their recordings from it).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device access, writable.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The memory region.
    pub fn memory(&self) -> SmmuMemory {
        self.memory
    }

    /// Reads the events recorded since the last call: how many, and the last one.
    pub fn drain_events(&mut self) -> (u32, Option<FaultRecord>) {
        let mask = (2 << EVENT_QUEUE_LOG2) - 1;
        let prod = self.device.read32(EVENTQ_PROD) & mask;
        let mut count = 0;
        let mut last = None;
        while self.event_cons != prod {
            let slot = self.memory.event_queue()
                + u64::from(self.event_cons & ((1 << EVENT_QUEUE_LOG2) - 1)) * EVENT_BYTES;
            let first = self.device.read_memory(slot);
            let second = self.device.read_memory(slot + 8);
            let address = self.device.read_memory(slot + 16);
            last = Some(FaultRecord {
                kind: (first & 0xFF) as u8,
                stream: (first >> 32) as u32,
                address,
                read: second & (1 << 35) != 0,
            });
            count += 1;
            self.event_cons = (self.event_cons + 1) & mask;
        }
        self.device.write32(EVENTQ_CONS, self.event_cons);
        (count, last)
    }
}

/// Writes `CR0` and waits for `CR0ACK` to match.
fn write_acknowledged(device: &mut impl DeviceAccess, value: u32) -> Result<(), SmmuError> {
    device.write32(CR0, value);
    wait_until(device, CR0ACK, |ack| ack == value)
}

/// Polls `register` until `done` holds (bounded).
fn wait_until(
    device: &mut impl DeviceAccess,
    register: usize,
    done: impl Fn(u32) -> bool,
) -> Result<(), SmmuError> {
    for _ in 0..1_000_000 {
        if done(device.read32(register)) {
            return Ok(());
        }
    }
    Err(SmmuError::AckTimeout { register })
}

fn write_words(device: &mut impl DeviceAccess, address: u64, words: &[u64]) {
    for (index, word) in (0u64..).zip(words) {
        device.write_memory(address + index * 8, *word);
    }
}

// The structures fit their slots.
const _: () = assert!(CD_BYTES <= 0x4000 - 0x2800 && (1 << SPLIT) * STE_BYTES <= 0x4000);
