//! A `newc` cpio archive written in memory: the initramfs format Linux unpacks (uncompressed here;
//! Linux accepts it as it is).

/// A `newc` ("070701") cpio archive, built in memory: headers of 13 hexadecimal fields, names and data
/// each padded to 4 bytes, closed by `TRAILER!!!`.
#[derive(Default)]
pub struct CpioWriter {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl CpioWriter {
    const DIRECTORY: u32 = 0o040_000;
    const REGULAR: u32 = 0o100_000;
    const SYMLINK: u32 = 0o120_000;
    const CHARACTER_DEVICE: u32 = 0o020_000;

    /// Adds a directory (mode 0755).
    pub fn directory(&mut self, path: &str) {
        self.entry(path, Self::DIRECTORY | 0o755, 2, (0, 0), &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        self.entry(path, Self::REGULAR | permissions, 1, (0, 0), data);
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, Self::SYMLINK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// Adds a character device node.
    pub fn character_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, Self::CHARACTER_DEVICE | 0o600, 1, (major, minor), &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, links: u32, device: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_size = path.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            links,
            0, // mtime: fixed, so that the archive is reproducible
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // devmajor
            0, // devminor
            device.0,
            device.1,
            u32::try_from(name_size).unwrap_or(u32::MAX),
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Closes the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, rdev major, rdev minor, data) per entry.
    fn parse_cpio(mut bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut consumed = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at byte {consumed}");
            let field = |index: usize| {
                let text =
                    std::str::from_utf8(&bytes[6 + index * 8..14 + index * 8]).expect("ASCII");
                u32::from_str_radix(text, 16).expect("hex")
            };
            let (mode, size, major, minor, name_size) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + name_size as usize;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .expect("name")
                .to_string();
            assert_eq!(bytes[name_end - 1], 0, "{name} NUL-terminated");
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            consumed += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty(), "nothing after the trailer");
                return entries;
            }
            entries.push((name, mode, major, minor, data));
        }
    }

    #[test]
    fn cpio_entries_read_back_with_their_types_and_padding() {
        let mut archive = CpioWriter::default();
        archive.directory("dev");
        archive.character_device("dev/console", 5, 1);
        archive.file("init", 0o755, b"#!/bin/sh\n");
        archive.file("odd", 0o644, b"abcde");
        archive.symlink("bin/sh", "busybox");
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse_cpio(&bytes);
        let expected: Vec<(String, u32, u32, u32, Vec<u8>)> = vec![
            ("dev".into(), 0o040_755, 0, 0, vec![]),
            ("dev/console".into(), 0o020_600, 5, 1, vec![]),
            ("init".into(), 0o100_755, 0, 0, b"#!/bin/sh\n".to_vec()),
            ("odd".into(), 0o100_644, 0, 0, b"abcde".to_vec()),
            ("bin/sh".into(), 0o120_777, 0, 0, b"busybox".to_vec()),
        ];
        assert_eq!(entries, expected);
    }
}
