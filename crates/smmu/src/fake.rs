//! A fake SMMUv3 for the host tests: registers, memory, a command queue it consumes when `PROD` is
//! written, a TLB that the invalidation commands empty, and a DMA translation that walks the stream
//! table, the context descriptor and the page table the way the hardware does (independently of the
//! driver's own walk).

use std::collections::{BTreeMap, HashMap};

use crate::DeviceAccess;
use crate::command::Command;
use crate::registers::*;

/// One thing the driver did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A word of SMMU memory written.
    Memory { address: u64, value: u64 },
    /// The barrier.
    Publish,
    /// A command the SMMU executed.
    Executed(Command),
}

/// QEMU 7.2's ID registers (see `registers::tests`).
pub const IDR0_VALUE: u32 =
    (1 << 1) | (2 << 2) | (1 << 4) | (1 << 12) | (2 << 21) | (1 << 24) | (1 << 26) | (1 << 27);
pub const IDR1_VALUE: u32 = 16 | (19 << 16) | (19 << 21);
pub const IDR5_VALUE: u32 = 4 | (1 << 4) | (1 << 6);

#[derive(Default)]
pub struct FakeSmmu {
    pub registers: BTreeMap<usize, u64>,
    pub memory: HashMap<u64, u64>,
    pub log: Vec<Event>,
    /// Cached translations: page → output page.
    pub tlb: HashMap<u64, u64>,
    /// Make `CMDQ_CONS` never advance (a stuck SMMU).
    pub stuck: bool,
}

impl FakeSmmu {
    pub fn new() -> Self {
        let mut fake = Self::default();
        fake.registers.insert(IDR0, IDR0_VALUE.into());
        fake.registers.insert(IDR1, IDR1_VALUE.into());
        fake.registers.insert(IDR5, IDR5_VALUE.into());
        fake
    }

    fn register(&self, offset: usize) -> u64 {
        self.registers.get(&offset).copied().unwrap_or(0)
    }

    fn word(&self, address: u64) -> u64 {
        self.memory.get(&address).copied().unwrap_or(0)
    }

    fn consume_commands(&mut self) {
        if self.stuck || self.register(CR0) & u64::from(CR0_CMDQEN) == 0 {
            return;
        }
        let base_register = self.register(CMDQ_BASE);
        let log2 = (base_register & 0x1F) as u32;
        let base = base_register & 0x000F_FFFF_FFFF_FFE0;
        let mask = (2u64 << log2) - 1;
        let prod = self.register(CMDQ_PROD) & mask;
        let mut cons = self.register(CMDQ_CONS) & mask;
        while cons != prod {
            let slot = base + (cons & ((1 << log2) - 1)) * 16;
            let words = [self.word(slot), self.word(slot + 8)];
            let command = Command::decode(words).expect("a known command");
            match command {
                Command::InvalidateAllNonSecure
                | Command::InvalidateAllStage1 { .. }
                | Command::InvalidateAsid { .. } => self.tlb.clear(),
                Command::InvalidateAddress { address, .. } => {
                    self.tlb.remove(&(address & !0xFFF));
                }
                _ => {}
            }
            self.log.push(Event::Executed(command));
            cons = (cons + 1) & mask;
        }
        self.registers.insert(CMDQ_CONS, cons);
    }

    /// Where a DMA from `stream` to `iova` goes, as the SMMU decides it: `None` is a fault (or an
    /// abort). Successful translations are cached in the TLB, which only invalidations empty.
    pub fn dma(&mut self, stream: u32, iova: u64) -> Option<u64> {
        if self.register(CR0ACK) & u64::from(CR0_SMMUEN) == 0 {
            // Disabled: GBPA decides.
            return (self.register(GBPA) & u64::from(GBPA_ABORT) == 0).then_some(iova);
        }
        let page = iova & !0xFFF;
        let config = self.register(STRTAB_BASE_CFG);
        let log2_size = config & 0x3F;
        let split = (config >> 6) & 0x1F;
        assert_eq!((config >> 16) & 3, 1, "two-level stream table");
        if u64::from(stream) >= 1 << log2_size {
            return None;
        }
        let level1 = self.register(STRTAB_BASE) & 0x000F_FFFF_FFFF_FFC0;
        let descriptor = self.word(level1 + (u64::from(stream) >> split) * 8);
        let span = descriptor & 0x1F;
        if span == 0 || u64::from(stream) & ((1 << split) - 1) >= 1 << (span - 1) {
            return None;
        }
        let entry =
            (descriptor & 0x000F_FFFF_FFFF_FFC0) + (u64::from(stream) & ((1 << split) - 1)) * 64;
        let ste = self.word(entry);
        if ste & 1 == 0 || (ste >> 1) & 7 != 0b101 {
            return None;
        }
        // The configuration is valid for this stream: the TLB (one ASID) may answer.
        if let Some(output) = self.tlb.get(&page) {
            return Some(output + (iova & 0xFFF));
        }
        let cd = ste & 0x000F_FFFF_FFFF_FFC0;
        let cd0 = self.word(cd);
        assert_eq!(cd0 & 0x3F, 25, "T0SZ");
        assert!(cd0 & (1 << 31) != 0, "valid CD");
        let mut table = self.word(cd + 8) & 0x000F_FFFF_FFFF_FFF0;
        for level in 1..=3u32 {
            let index = (iova >> (12 + 9 * (3 - level))) & 511;
            let descriptor = self.word(table + index * 8);
            let leaf = match (descriptor & 3, level) {
                (0b11, 3) | (0b01, 2) => true,
                (0b11, _) => false,
                _ => return None,
            };
            let output = descriptor & 0x0000_FFFF_FFFF_F000;
            if leaf {
                let size = 1u64 << (12 + 9 * (3 - level));
                let translated = output + (iova & (size - 1));
                self.tlb.insert(page, translated & !0xFFF);
                return Some(translated);
            }
            table = output;
        }
        None
    }

    /// The commands executed so far.
    pub fn commands(&self) -> Vec<Command> {
        self.log
            .iter()
            .filter_map(|event| match event {
                Event::Executed(command) => Some(*command),
                _ => None,
            })
            .collect()
    }
}

impl DeviceAccess for FakeSmmu {
    fn read32(&mut self, offset: usize) -> u32 {
        self.register(offset) as u32
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.write64(offset, value.into());
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.registers.insert(offset, value);
        match offset {
            CR0 => {
                self.registers.insert(CR0ACK, value);
            }
            GBPA => {
                self.registers.insert(GBPA, value & !u64::from(GBPA_UPDATE));
            }
            CMDQ_PROD => self.consume_commands(),
            _ => {}
        }
    }

    fn read_memory(&mut self, address: u64) -> u64 {
        assert!(address.is_multiple_of(8));
        self.word(address)
    }

    fn write_memory(&mut self, address: u64, value: u64) {
        assert!(address.is_multiple_of(8));
        self.memory.insert(address, value);
        self.log.push(Event::Memory { address, value });
    }

    fn publish(&mut self) {
        self.log.push(Event::Publish);
    }
}
