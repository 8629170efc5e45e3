//! The flattened device tree format (Devicetree Specification v0.4, chapter 5): the header and the
//! tokens of the structure block, decoded with bounds checks so that a malformed blob yields an error.

use crate::Error;

/// The magic number at the start of every blob.
pub(crate) const MAGIC: u32 = 0xd00d_feed;
/// Bytes in the version 17 header.
pub(crate) const HEADER_LEN: usize = 40;
/// The version this crate writes and the oldest it reads (16 lacks `size_dt_struct`).
pub(crate) const VERSION: u32 = 17;

pub(crate) const TOKEN_BEGIN_NODE: u32 = 1;
pub(crate) const TOKEN_END_NODE: u32 = 2;
pub(crate) const TOKEN_PROPERTY: u32 = 3;
pub(crate) const TOKEN_NOP: u32 = 4;
pub(crate) const TOKEN_END: u32 = 9;

/// Reads a big-endian `u32` at `offset`, or fails with [`Error::Truncated`].
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> Result<u32, Error> {
    let end = offset.checked_add(4).ok_or(Error::Truncated)?;
    let field = bytes.get(offset..end).ok_or(Error::Truncated)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(field);
    Ok(u32::from_be_bytes(word))
}

/// Writes a big-endian `u32` at `offset`, or fails with [`Error::Truncated`].
pub(crate) fn write_u32(bytes: &mut [u8], offset: usize, value: u32) -> Result<(), Error> {
    let end = offset.checked_add(4).ok_or(Error::Truncated)?;
    let field = bytes.get_mut(offset..end).ok_or(Error::Truncated)?;
    field.copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// Rounds up to the 4-byte alignment of structure-block tokens.
pub(crate) fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|padded| padded & !3)
}

/// Widens a header field; every `u32` fits in `usize` on the targets this crate supports.
pub(crate) fn to_usize(value: u32) -> Result<usize, Error> {
    usize::try_from(value).map_err(|_| Error::BadLayout)
}

/// Narrows an offset or size for the header; the editor keeps every offset below `u32::MAX`.
pub(crate) fn to_u32(value: usize) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::BadLayout)
}

/// The header fields, widened to `usize`, checked against each other and against the blob length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub total_size: usize,
    pub struct_offset: usize,
    pub strings_offset: usize,
    pub reserve_map_offset: usize,
    pub version: u32,
    pub last_compatible_version: u32,
    pub boot_cpu: u32,
    pub strings_size: usize,
    pub struct_size: usize,
}

impl Header {
    /// Decodes and checks the header of the blob at the start of `bytes` (which may be longer than
    /// the blob).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if read_u32(bytes, 0)? != MAGIC {
            return Err(Error::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field = |index: usize| read_u32(bytes, index * 4);
        let header = Self {
            total_size: to_usize(field(1)?)?,
            struct_offset: to_usize(field(2)?)?,
            strings_offset: to_usize(field(3)?)?,
            reserve_map_offset: to_usize(field(4)?)?,
            version: field(5)?,
            last_compatible_version: field(6)?,
            boot_cpu: field(7)?,
            strings_size: to_usize(field(8)?)?,
            struct_size: to_usize(field(9)?)?,
        };
        if header.version < VERSION || header.last_compatible_version > VERSION {
            return Err(Error::UnsupportedVersion);
        }
        if header.total_size > bytes.len() {
            return Err(Error::Truncated);
        }
        header.check_layout()?;
        Ok(header)
    }

    /// Checks that the blocks lie inside the blob, after the header, aligned, and do not overlap.
    fn check_layout(&self) -> Result<(), Error> {
        let struct_end = self.struct_end()?;
        let strings_end = self.strings_end()?;
        let inside = |start: usize, end: usize| start >= HEADER_LEN && end <= self.total_size;
        if !inside(self.struct_offset, struct_end)
            || !inside(self.strings_offset, strings_end)
            || !inside(self.reserve_map_offset, self.reserve_map_offset)
        {
            return Err(Error::BadLayout);
        }
        if !self.struct_offset.is_multiple_of(4)
            || !self.struct_size.is_multiple_of(4)
            || !self.reserve_map_offset.is_multiple_of(8)
        {
            return Err(Error::BadLayout);
        }
        let disjoint = struct_end <= self.strings_offset || strings_end <= self.struct_offset;
        if !disjoint {
            return Err(Error::BadLayout);
        }
        Ok(())
    }

    pub fn struct_end(&self) -> Result<usize, Error> {
        self.struct_offset
            .checked_add(self.struct_size)
            .ok_or(Error::BadLayout)
    }

    pub fn strings_end(&self) -> Result<usize, Error> {
        self.strings_offset
            .checked_add(self.strings_size)
            .ok_or(Error::BadLayout)
    }

    /// Writes the header back to the start of `bytes`.
    pub fn write(&self, bytes: &mut [u8]) -> Result<(), Error> {
        let fields = [
            MAGIC,
            to_u32(self.total_size)?,
            to_u32(self.struct_offset)?,
            to_u32(self.strings_offset)?,
            to_u32(self.reserve_map_offset)?,
            self.version,
            self.last_compatible_version,
            self.boot_cpu,
            to_u32(self.strings_size)?,
            to_u32(self.struct_size)?,
        ];
        for (index, value) in fields.into_iter().enumerate() {
            write_u32(bytes, index * 4, value)?;
        }
        Ok(())
    }
}

/// One token of the structure block, with the offset of the token that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `FDT_BEGIN_NODE` and the node's name (unit address included, no NUL).
    BeginNode { name: &'a [u8] },
    /// `FDT_END_NODE`.
    EndNode,
    /// `FDT_PROP`: where the name lies in the strings block, and the value.
    Property { name_offset: usize, value: &'a [u8] },
    /// `FDT_NOP`.
    Nop,
    /// `FDT_END`.
    End,
}

/// Decodes the token at `offset` of the structure block `structure`; returns it and the offset of the
/// next token.
pub(crate) fn token_at(structure: &[u8], offset: usize) -> Result<(Token<'_>, usize), Error> {
    let tag = read_u32(structure, offset)?;
    let after_tag = offset + 4;
    match tag {
        TOKEN_BEGIN_NODE => {
            let rest = structure.get(after_tag..).ok_or(Error::Truncated)?;
            let name_len = rest
                .iter()
                .position(|&byte| byte == 0)
                .ok_or(Error::Truncated)?;
            let next = align4(after_tag + name_len + 1).ok_or(Error::Truncated)?;
            if next > structure.len() {
                return Err(Error::Truncated);
            }
            Ok((
                Token::BeginNode {
                    name: &rest[..name_len],
                },
                next,
            ))
        }
        TOKEN_END_NODE => Ok((Token::EndNode, after_tag)),
        TOKEN_PROPERTY => {
            let len = to_usize(read_u32(structure, after_tag)?)?;
            let name_offset = to_usize(read_u32(structure, after_tag + 4)?)?;
            let value_start = after_tag + 8;
            let value_end = value_start.checked_add(len).ok_or(Error::Truncated)?;
            let value = structure
                .get(value_start..value_end)
                .ok_or(Error::Truncated)?;
            let next = align4(value_end).ok_or(Error::Truncated)?;
            if next > structure.len() {
                return Err(Error::Truncated);
            }
            Ok((Token::Property { name_offset, value }, next))
        }
        TOKEN_NOP => Ok((Token::Nop, after_tag)),
        TOKEN_END => Ok((Token::End, after_tag)),
        _ => Err(Error::BadStructure),
    }
}

/// The NUL-terminated string at `offset` of the strings block.
pub(crate) fn string_at(strings: &[u8], offset: usize) -> Result<&[u8], Error> {
    let rest = strings.get(offset..).ok_or(Error::BadStructure)?;
    let len = rest
        .iter()
        .position(|&byte| byte == 0)
        .ok_or(Error::BadStructure)?;
    Ok(&rest[..len])
}
