//! Builds the bare-metal images: `cargo build --release --target aarch64-unknown-none-softfloat -p
//! <package>`, then the ELF's loadable segments laid out as a raw binary (what QEMU's `-bios` and
//! `-device loader` take).
//!
//! Why soft-float: EL3 and EL2 firmware must never touch the FP/SIMD/SVE/SME registers of the world
//! it interrupted (a CPU can be in SME Streaming mode when the rendezvous SGI arrives, where plain
//! SIMD instructions trap). `aarch64-unknown-none` lets the compiler (and the precompiled `core`) use
//! NEON registers for copies; `aarch64-unknown-none-softfloat` never does.
//!
//! The ELF-to-binary step is ours (a few lines over the ELF64 program headers) so that xtask needs no
//! binutils or llvm-tools.

use crate::error::XtaskError;
use crate::qemu::Machine;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target of every firmware image.
pub const FIRMWARE_TARGET: &str = "aarch64-unknown-none-softfloat";

/// An image to build: a package, its binary, and optional cargo features.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    /// Cargo package name (and binary name).
    pub package: &'a str,
    /// Cargo features, comma separated (may be empty).
    pub features: &'a str,
    /// Whether the image is built for a board (it reads `board::Selected`); the demo's guest runs
    /// in its own address space and is the same on every board.
    pub board_specific: bool,
}

/// The monitor with the erratum call.
pub const MONITOR: Image = Image {
    package: "monitor",
    features: "",
    board_specific: true,
};
/// The monitor built without the fix: answers the erratum call with -1.
pub const MONITOR_WITHOUT_FIX: Image = Image {
    package: "monitor",
    features: "without-erratum-fix",
    board_specific: true,
};
/// The monitor of the benchmarks: the Non-secure PMU may count EL3 (`MDCR_EL3.SPME`), so the
/// figures include the monitor's own instructions. Never deployed: it tells the Non-secure world how
/// much the Secure world executes.
pub const MONITOR_BENCHMARK: Image = Image {
    package: "monitor",
    features: "benchmark",
    board_specific: true,
};
/// The EL2 test payload that drives the monitor's scenarios.
pub const PAYLOAD: Image = Image {
    package: "el2-test-payload",
    features: "",
    board_specific: true,
};
/// The protected hypervisor.
pub const HYPERVISOR: Image = Image {
    package: "hyp",
    features: "",
    board_specific: true,
};
/// The hypervisor of the benchmarks: the host's PMU may count EL2 (`MDCR_EL2.HPMD` clear), so the
/// figures include the hypervisor's instructions. Never deployed.
pub const HYPERVISOR_BENCHMARK: Image = Image {
    package: "hyp",
    features: "benchmark",
    board_specific: true,
};
/// The benchmark hypervisor with upstream Linux's placement: one firmware call per page.
pub const HYPERVISOR_CALL_PER_PAGE: Image = Image {
    package: "hyp",
    features: "benchmark,firmware-call-per-page",
    board_specific: true,
};
/// The demo host (EL1).
pub const HOST: Image = Image {
    package: "host-demo",
    features: "",
    board_specific: true,
};
/// The demo's protected guest.
pub const GUEST: Image = Image {
    package: "guest-demo",
    features: "",
    board_specific: false,
};
/// Where the hypervisor enters the host on QEMU `virt` (the board's `HOST_ENTRY`; other boards:
/// [`Machine::facts`]).
pub const HOST_ADDRESS: u64 = <crate::qemu::Board as board::Platform>::HOST_ENTRY as u64;

/// The root of the workspace (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Adds the soft-float target through rustup when it is missing.
pub fn ensure_target() -> Result<(), XtaskError> {
    crate::setup::ensure_rust_target(FIRMWARE_TARGET)
}

/// Builds `image` for QEMU `virt` and returns the path of its raw binary.
pub fn build(image: Image) -> Result<PathBuf, XtaskError> {
    build_for(Machine::Virt, image)
}

/// Builds `image` for `machine` and returns the path of its raw binary
/// (`target/images/<package>[-features][-board].bin`). The board is chosen through the `board`
/// crate's cargo feature, which the image's build script (its link address) and its code read.
pub fn build_for(machine: Machine, image: Image) -> Result<PathBuf, XtaskError> {
    ensure_target()?;
    let root = workspace_root();
    let target_dir = root.join("target");
    // A separate target directory per feature set and board keeps builds from invalidating each
    // other.
    let mut suffix = if image.features.is_empty() {
        String::new()
    } else {
        format!("-{}", image.features.replace(',', "-"))
    };
    let mut features: Vec<String> = image
        .features
        .split(',')
        .filter(|feature| !feature.is_empty())
        .map(str::to_owned)
        .collect();
    if image.board_specific {
        suffix.push_str(machine.suffix());
        if let Some(board) = machine.facts().board_feature {
            features.push(format!("board/{board}"));
        }
    }
    let build_dir = target_dir.join(format!("firmware{suffix}"));
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            FIRMWARE_TARGET,
            "-p",
            image.package,
        ])
        .arg("--target-dir")
        .arg(&build_dir);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command
        .status()
        .map_err(|error| XtaskError::spawn("cargo", error))?;
    if !status.success() {
        return Err(XtaskError::failed(
            format!("cargo build of {}", image.package),
            status,
        ));
    }
    let elf_path = build_dir
        .join(FIRMWARE_TARGET)
        .join("release")
        .join(image.package);
    if image.package == MONITOR.package {
        crate::codegen::check_fiq_fast_path(&elf_path)?;
    }
    let elf =
        std::fs::read(&elf_path).map_err(|error| XtaskError::file("read", &elf_path, error))?;
    let binary = elf_to_binary(&elf)
        .map_err(|error| XtaskError::Unexpected(format!("{}: {error}", elf_path.display())))?;
    let images = target_dir.join("images");
    std::fs::create_dir_all(&images).map_err(|error| XtaskError::file("create", &images, error))?;
    let output = images.join(format!("{}{suffix}.bin", image.package));
    std::fs::write(&output, binary).map_err(|error| XtaskError::file("write", &output, error))?;
    Ok(output)
}

/// Why an ELF file cannot be turned into a raw image.
#[derive(Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian ELF64 file.
    NotElf64,
    /// A header or segment lies outside the file.
    Truncated,
    /// No loadable segment with file contents.
    NothingToLoad,
    /// The segments span more than 64 MiB: not a firmware image.
    TooLarge,
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::NotElf64 => "not a little-endian ELF64 file",
            Self::Truncated => "truncated ELF file",
            Self::NothingToLoad => "no loadable segment",
            Self::TooLarge => "loadable segments span more than 64 MiB",
        };
        formatter.write_str(text)
    }
}

impl std::error::Error for ElfError {}

fn read_u16(bytes: &[u8], offset: usize) -> Result<u16, ElfError> {
    let field = bytes.get(offset..offset + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([field[0], field[1]]))
}

fn read_u32(bytes: &[u8], offset: usize) -> Result<u32, ElfError> {
    let field = bytes.get(offset..offset + 4).ok_or(ElfError::Truncated)?;
    let mut array = [0; 4];
    array.copy_from_slice(field);
    Ok(u32::from_le_bytes(array))
}

fn read_u64(bytes: &[u8], offset: usize) -> Result<u64, ElfError> {
    let field = bytes.get(offset..offset + 8).ok_or(ElfError::Truncated)?;
    let mut array = [0; 8];
    array.copy_from_slice(field);
    Ok(u64::from_le_bytes(array))
}

fn to_usize(value: u64) -> Result<usize, ElfError> {
    usize::try_from(value).map_err(|_| ElfError::TooLarge)
}

/// Lays the file contents of every `PT_LOAD` segment out at its physical address, relative to the
/// lowest one; gaps are zero. (`.bss` has no file contents and is cleared by the image itself.)
pub fn elf_to_binary(elf: &[u8]) -> Result<Vec<u8>, ElfError> {
    const PT_LOAD: u32 = 1;
    const MAX_IMAGE: u64 = 64 << 20;
    if elf.get(..6) != Some(&[0x7F, b'E', b'L', b'F', 2, 1][..]) {
        return Err(ElfError::NotElf64);
    }
    let header_offset = to_usize(read_u64(elf, 0x20)?)?;
    let header_size = usize::from(read_u16(elf, 0x36)?);
    let header_count = usize::from(read_u16(elf, 0x38)?);
    let mut segments = Vec::new();
    for index in 0..header_count {
        let header = header_offset + index * header_size;
        if read_u32(elf, header)? != PT_LOAD {
            continue;
        }
        let file_offset = to_usize(read_u64(elf, header + 0x08)?)?;
        let physical = read_u64(elf, header + 0x18)?;
        let file_size = to_usize(read_u64(elf, header + 0x20)?)?;
        if file_size == 0 {
            continue;
        }
        let contents = elf
            .get(file_offset..file_offset + file_size)
            .ok_or(ElfError::Truncated)?;
        segments.push((physical, contents));
    }
    let base = segments
        .iter()
        .map(|(physical, _)| *physical)
        .min()
        .ok_or(ElfError::NothingToLoad)?;
    let end = segments
        .iter()
        .map(|(physical, contents)| physical + contents.len() as u64)
        .max()
        .ok_or(ElfError::NothingToLoad)?;
    if end - base > MAX_IMAGE {
        return Err(ElfError::TooLarge);
    }
    let mut binary = vec![0; to_usize(end - base)?];
    for (physical, contents) in segments {
        let start = to_usize(physical - base)?;
        binary[start..start + contents.len()].copy_from_slice(contents);
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (physical address, contents) PT_LOAD segments.
    fn elf(segments: &[(u64, &[u8])]) -> Vec<u8> {
        let header_offset = 64usize;
        let header_size = 56usize;
        let data_offset = header_offset + header_size * segments.len();
        let mut file = vec![0u8; data_offset];
        file[..6].copy_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1]);
        file[0x20..0x28].copy_from_slice(&(header_offset as u64).to_le_bytes());
        file[0x36..0x38].copy_from_slice(&(header_size as u16).to_le_bytes());
        file[0x38..0x3A].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (index, (physical, contents)) in segments.iter().enumerate() {
            let header = header_offset + index * header_size;
            let offset = file.len() as u64;
            file[header..header + 4].copy_from_slice(&1u32.to_le_bytes());
            file[header + 8..header + 16].copy_from_slice(&offset.to_le_bytes());
            file[header + 0x18..header + 0x20].copy_from_slice(&physical.to_le_bytes());
            file[header + 0x20..header + 0x28]
                .copy_from_slice(&(contents.len() as u64).to_le_bytes());
            file.extend_from_slice(contents);
        }
        file
    }

    /// PT_LOAD segments as (physical address, contents).
    type Segments<'a> = &'a [(u64, &'a [u8])];

    #[test]
    fn segments_are_laid_out_by_physical_address() {
        let cases: &[(Segments, Result<Vec<u8>, ElfError>)] = &[
            (&[(0x1000, &[1, 2])], Ok(vec![1, 2])),
            (&[(0x1000, &[1]), (0x1004, &[2])], Ok(vec![1, 0, 0, 0, 2])),
            (&[(0x1004, &[2]), (0x1000, &[1])], Ok(vec![1, 0, 0, 0, 2])),
            (&[], Err(ElfError::NothingToLoad)),
            (&[(0, &[1]), (65 << 20, &[2])], Err(ElfError::TooLarge)),
        ];
        for (segments, expected) in cases {
            assert_eq!(&elf_to_binary(&elf(segments)), expected, "{segments:?}");
        }
        assert_eq!(elf_to_binary(b"not an elf"), Err(ElfError::NotElf64));
        let mut truncated = elf(&[(0x1000, &[1, 2, 3])]);
        truncated.truncate(truncated.len() - 1);
        assert_eq!(elf_to_binary(&truncated), Err(ElfError::Truncated));
    }
}
