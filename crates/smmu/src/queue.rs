//! The command queue: a circular buffer in memory the SMMU reads, `PROD` written by software and
//! `CONS` by the SMMU, each an index with a wrap bit just above it (Arm IHI 0070, 3.5).

use crate::command::Command;
use crate::registers::{CMDQ_CONS, CMDQ_PROD, GERROR, GERROR_CMDQ_ERR, GERRORN};
use crate::{DeviceAccess, SmmuError};

/// Bytes of a command.
pub const COMMAND_BYTES: u64 = 16;
/// How many times a wait reads `CMDQ_CONS` before giving up. QEMU consumes the queue as soon as
/// `PROD` is written; real SMMUs finish a sync in microseconds.
const POLLS: u32 = 1_000_000;

/// The command queue.
#[derive(Debug)]
pub struct CommandQueue {
    base: u64,
    log2_entries: u32,
    /// Next free slot, with the wrap bit (what `CMDQ_PROD` will say after the next submit).
    prod: u32,
    /// `PROD` as last written to the SMMU.
    submitted: u32,
}

impl CommandQueue {
    /// A queue of `2^log2_entries` commands at `base` (aligned to its size).
    pub fn new(base: u64, log2_entries: u32) -> Self {
        Self {
            base,
            log2_entries,
            prod: 0,
            submitted: 0,
        }
    }

    /// `CMDQ_BASE`: the address and the size.
    pub fn base_register(&self) -> u64 {
        crate::registers::BASE_READ_ALLOCATE | self.base | u64::from(self.log2_entries)
    }

    fn index_mask(&self) -> u32 {
        (1 << self.log2_entries) - 1
    }

    /// Index and wrap bit.
    fn position_mask(&self) -> u32 {
        (2 << self.log2_entries) - 1
    }

    fn full(&self, cons: u32) -> bool {
        let index = self.index_mask();
        (self.prod & index) == (cons & index) && (self.prod ^ cons) & (index + 1) != 0
    }

    /// Adds `command` to the queue (not yet visible to the SMMU: see [`Self::submit`]). Submits and
    /// waits for room when the queue is full.
    pub fn push(
        &mut self,
        device: &mut impl DeviceAccess,
        command: Command,
    ) -> Result<(), SmmuError> {
        let mut polls = 0;
        while self.full(device.read32(CMDQ_CONS)) {
            if self.submitted != self.prod {
                self.submit(device);
            }
            check_error(device)?;
            polls += 1;
            if polls > POLLS {
                return Err(SmmuError::CommandQueueTimeout);
            }
        }
        let slot = self.base + u64::from(self.prod & self.index_mask()) * COMMAND_BYTES;
        let [first, second] = command.encode();
        device.write_memory(slot, first);
        device.write_memory(slot + 8, second);
        self.prod = (self.prod + 1) & self.position_mask();
        Ok(())
    }

    /// Makes the pushed commands visible (barrier) and tells the SMMU (`CMDQ_PROD`).
    pub fn submit(&mut self, device: &mut impl DeviceAccess) {
        device.publish();
        device.write32(CMDQ_PROD, self.prod);
        self.submitted = self.prod;
    }

    /// Pushes `CMD_SYNC`, submits, and waits until the SMMU has consumed it: every earlier command
    /// (and the invalidations' effect on transactions in flight) is then complete.
    pub fn sync(&mut self, device: &mut impl DeviceAccess) -> Result<(), SmmuError> {
        self.push(device, Command::Sync)?;
        self.submit(device);
        let target = self.prod;
        for _ in 0..POLLS {
            check_error(device)?;
            let cons = device.read32(CMDQ_CONS) & self.position_mask();
            if cons == target {
                return Ok(());
            }
        }
        Err(SmmuError::SyncTimeout)
    }
}

/// A command the SMMU refused stops the queue and toggles `GERROR.CMDQ_ERR` (active while it differs
/// from `GERRORN`), with the reason in `CMDQ_CONS.ERR`.
fn check_error(device: &mut impl DeviceAccess) -> Result<(), SmmuError> {
    if (device.read32(GERROR) ^ device.read32(GERRORN)) & GERROR_CMDQ_ERR != 0 {
        let reason = (device.read32(CMDQ_CONS) >> 24) & 0x7F;
        return Err(SmmuError::CommandError { reason });
    }
    Ok(())
}
