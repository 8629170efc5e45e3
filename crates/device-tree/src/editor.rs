//! In-place editing: properties set and removed, nodes added, inside the caller's buffer.
//!
//! The blob keeps the layout dtc, QEMU and libfdt write: header, memory reservation block, structure
//! block, strings block. Growing the structure block moves the strings block up; a new property name
//! is appended to the strings block; free space after the strings block up to the end of the buffer is
//! what the blob can grow into, and `totalsize` follows the end of the strings block when it passes it.

use crate::Error;
use crate::format::{
    Header, TOKEN_BEGIN_NODE, TOKEN_END_NODE, TOKEN_PROPERTY, align4, to_u32, write_u32,
};
use crate::reader::{DeviceTree, Item};

/// A device tree blob at the start of a mutable buffer; the rest of the buffer is room to grow.
#[derive(Debug)]
pub struct DeviceTreeEditor<'a> {
    buffer: &'a mut [u8],
    header: Header,
}

impl<'a> DeviceTreeEditor<'a> {
    /// Checks the blob at the start of `buffer`; the blob may grow up to `buffer.len()` bytes (capped
    /// at 4 GiB, the format's limit).
    ///
    /// Fails with [`Error::UnsupportedLayout`] unless the blocks come in the usual order (memory
    /// reservations, structure, strings).
    pub fn new(buffer: &'a mut [u8]) -> Result<Self, Error> {
        let header = Header::parse(buffer)?;
        let ordered = header.reserve_map_offset <= header.struct_offset
            && header.struct_end()? <= header.strings_offset;
        if !ordered {
            return Err(Error::UnsupportedLayout);
        }
        Ok(Self { buffer, header })
    }

    /// A read-only view of the blob as it is now.
    pub fn tree(&self) -> DeviceTree<'_> {
        // `new` checked the header and every edit keeps it consistent with the buffer.
        DeviceTree::from_checked(self.buffer, self.header)
    }

    /// The blob as it is now: the first `totalsize` bytes of the buffer.
    pub fn blob(&self) -> &[u8] {
        self.buffer.get(..self.header.total_size).unwrap_or(&[])
    }

    /// The blob's `totalsize`.
    pub fn total_size(&self) -> usize {
        self.header.total_size
    }

    /// Drops the free space after the strings block from `totalsize` (as `fdt_pack` does), so that the
    /// blob can be written out or copied without it; returns the new `totalsize`.
    pub fn pack(&mut self) -> Result<usize, Error> {
        self.header.total_size = self.header.strings_end()?;
        self.header.write(self.buffer)?;
        Ok(self.header.total_size)
    }

    /// How many bytes the buffer may hold (the buffer length, capped at `u32::MAX`).
    fn capacity(&self) -> usize {
        self.buffer.len().min(u32::MAX as usize)
    }

    /// Sets property `name` of the node at `path` to `value`, creating the property if it is absent.
    pub fn set_property(&mut self, path: &str, name: &str, value: &[u8]) -> Result<(), Error> {
        let node = self.tree().find_node(path)?.offset();
        self.set_property_at(node, name, value)
    }

    /// Sets a string property (the NUL terminator is added).
    pub fn set_property_str(&mut self, path: &str, name: &str, value: &str) -> Result<(), Error> {
        let node = self.tree().find_node(path)?.offset();
        self.set_property_with(node, name, &[value.as_bytes(), &[0]])
    }

    /// Sets a property of one 32-bit cell.
    pub fn set_property_u32(&mut self, path: &str, name: &str, value: u32) -> Result<(), Error> {
        self.set_property(path, name, &value.to_be_bytes())
    }

    /// Sets a property of two 32-bit cells (a 64-bit value).
    pub fn set_property_u64(&mut self, path: &str, name: &str, value: u64) -> Result<(), Error> {
        self.set_property(path, name, &value.to_be_bytes())
    }

    /// Removes property `name` of the node at `path`; returns whether it was there.
    pub fn remove_property(&mut self, path: &str, name: &str) -> Result<bool, Error> {
        let node = self.tree().find_node(path)?.offset();
        self.remove_property_at(node, name)
    }

    /// Adds an empty child `name` (with unit address, e.g. `psci` or `monitor@e000000`) to the node at
    /// `parent_path`, after its existing children; does nothing when the child already exists.
    pub fn add_node(&mut self, parent_path: &str, name: &str) -> Result<(), Error> {
        let parent = self.tree().find_node(parent_path)?.offset();
        self.add_node_at(parent, name).map(|_| ())
    }

    /// Removes the nodes (with everything below them) whose structure offsets are given (from
    /// [`Node::structure_offset`](crate::Node::structure_offset), all read from this blob as it is
    /// now); returns how many were removed. The hypervisor uses it to hand the host a tree without
    /// the devices it withholds. Offsets that do not start a node are refused before anything changes.
    pub fn remove_nodes(&mut self, offsets: &mut [usize]) -> Result<usize, Error> {
        let structure = self.tree().structure();
        for &offset in offsets.iter() {
            let is_node = matches!(
                crate::format::token_at(structure, offset),
                Ok((crate::format::Token::BeginNode { .. }, _))
            );
            if !is_node || offset == self.tree().root()?.offset() {
                return Err(Error::BadStructure);
            }
        }
        // From the last to the first, so the offsets still to be removed stay valid (a child comes
        // after its parent, so it goes first).
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut removed = 0;
        let mut previous_start = usize::MAX;
        for &offset in offsets.iter() {
            if offset == previous_start {
                continue;
            }
            self.remove_node_at(offset)?;
            previous_start = offset;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes the node whose `FDT_BEGIN_NODE` is at structure offset `offset`, with its subtree.
    pub(crate) fn remove_node_at(&mut self, offset: usize) -> Result<(), Error> {
        let structure = self.tree().structure();
        let (token, after_begin) = crate::format::token_at(structure, offset)?;
        if !matches!(token, crate::format::Token::BeginNode { .. }) {
            return Err(Error::BadStructure);
        }
        let end = crate::reader::skip_subtree(structure, after_begin)?;
        self.resize_struct(offset, end - offset, 0)
    }

    pub(crate) fn set_property_at(
        &mut self,
        node: usize,
        name: &str,
        value: &[u8],
    ) -> Result<(), Error> {
        self.set_property_with(node, name, &[value])
    }

    /// Sets a property whose value is the concatenation of `parts` on the node at structure offset
    /// `node`. Offsets of the node and of everything before it stay valid.
    pub(crate) fn set_property_with(
        &mut self,
        node: usize,
        name: &str,
        parts: &[&[u8]],
    ) -> Result<(), Error> {
        let value_len = parts
            .iter()
            .try_fold(0usize, |sum, part| sum.checked_add(part.len()));
        let value_len = value_len.ok_or(Error::BufferTooSmall {
            needed: usize::MAX,
            available: self.capacity(),
        })?;
        let padded_len = align4(value_len).ok_or(Error::BadPropertyValue)?;
        let (existing, insert_at) = self.find_property(node, name)?;
        let (token_offset, old_total) = match existing {
            Some((offset, old_value_len)) => (
                offset,
                12 + align4(old_value_len).ok_or(Error::BadStructure)?,
            ),
            None => {
                check_name(name, false)?;
                (insert_at, 0)
            }
        };
        let name_offset = match existing {
            // Keep the name the property already has in the strings block.
            Some(_) => None,
            None => Some(self.add_string(name)?),
        };
        let new_total = 12usize
            .checked_add(padded_len)
            .ok_or(Error::BadPropertyValue)?;
        self.resize_struct(token_offset, old_total, new_total)?;
        let start = self.header.struct_offset + token_offset;
        write_u32(self.buffer, start, TOKEN_PROPERTY)?;
        write_u32(self.buffer, start + 4, to_u32(value_len)?)?;
        if let Some(name_offset) = name_offset {
            write_u32(self.buffer, start + 8, to_u32(name_offset)?)?;
        }
        let mut cursor = start + 12;
        for part in parts {
            let end = cursor + part.len();
            self.buffer
                .get_mut(cursor..end)
                .ok_or(Error::Truncated)?
                .copy_from_slice(part);
            cursor = end;
        }
        let padding_end = start + new_total;
        self.buffer
            .get_mut(cursor..padding_end)
            .ok_or(Error::Truncated)?
            .fill(0);
        Ok(())
    }

    pub(crate) fn remove_property_at(&mut self, node: usize, name: &str) -> Result<bool, Error> {
        let (existing, _) = self.find_property(node, name)?;
        let Some((offset, value_len)) = existing else {
            return Ok(false);
        };
        let total = 12 + align4(value_len).ok_or(Error::BadStructure)?;
        self.resize_struct(offset, total, 0)?;
        Ok(true)
    }

    /// Adds child `name` to the node at structure offset `parent` unless it exists; returns the child's
    /// offset either way.
    pub(crate) fn add_node_at(&mut self, parent: usize, name: &str) -> Result<usize, Error> {
        check_name(name, true)?;
        let tree = self.tree();
        let mut end = None;
        for item in tree.items(parent)? {
            match item? {
                Item::Child {
                    offset,
                    name: existing,
                } if existing == name.as_bytes() => return Ok(offset),
                Item::End { offset } => end = Some(offset),
                Item::Child { .. } | Item::Property { .. } => {}
            }
        }
        let offset = end.ok_or(Error::BadStructure)?;
        let name_len = align4(name.len() + 1).ok_or(Error::InvalidName)?;
        let total = 4 + name_len + 4;
        self.resize_struct(offset, 0, total)?;
        let start = self.header.struct_offset + offset;
        write_u32(self.buffer, start, TOKEN_BEGIN_NODE)?;
        let name_area = self
            .buffer
            .get_mut(start + 4..start + 4 + name_len)
            .ok_or(Error::Truncated)?;
        name_area.fill(0);
        name_area[..name.len()].copy_from_slice(name.as_bytes());
        write_u32(self.buffer, start + 4 + name_len, TOKEN_END_NODE)?;
        Ok(offset)
    }

    /// Finds property `name` directly in the node at `node`: `(Some((token offset, value length)), _)`
    /// when present, and in any case where a new property goes (before the first child).
    #[allow(clippy::type_complexity)]
    fn find_property(
        &self,
        node: usize,
        name: &str,
    ) -> Result<(Option<(usize, usize)>, usize), Error> {
        let tree = self.tree();
        let mut insert_at = None;
        for item in tree.items(node)? {
            match item? {
                Item::Property {
                    offset,
                    name_offset,
                    value,
                } => {
                    if tree.property_name(name_offset)? == name.as_bytes() {
                        return Ok((Some((offset, value.len())), offset));
                    }
                }
                Item::Child { offset, .. } | Item::End { offset } => {
                    insert_at.get_or_insert(offset);
                }
            }
        }
        Ok((None, insert_at.ok_or(Error::BadStructure)?))
    }

    /// The offset of `name` in the strings block, appending it when it is not there yet.
    fn add_string(&mut self, name: &str) -> Result<usize, Error> {
        let strings = self.tree().strings();
        let wanted = name.as_bytes();
        let found = strings
            .split(|&byte| byte == 0)
            .scan(0usize, |start, string| {
                let this = *start;
                *start += string.len() + 1;
                Some((this, string))
            })
            .find(|&(start, string)| string == wanted && start + string.len() < strings.len())
            .map(|(start, _)| start);
        if let Some(offset) = found {
            return Ok(offset);
        }
        let offset = self.header.strings_size;
        let start = self.header.strings_offset + offset;
        let end = start + wanted.len() + 1;
        self.ensure_capacity(end)?;
        self.buffer[start..end - 1].copy_from_slice(wanted);
        self.buffer[end - 1] = 0;
        self.header.strings_size += wanted.len() + 1;
        self.header.total_size = self.header.total_size.max(end);
        self.header.write(self.buffer)?;
        Ok(offset)
    }

    fn ensure_capacity(&self, needed: usize) -> Result<(), Error> {
        if needed > self.capacity() {
            return Err(Error::BufferTooSmall {
                needed,
                available: self.capacity(),
            });
        }
        Ok(())
    }

    /// Turns the `old_len` bytes at structure offset `offset` into `new_len` bytes (contents left for
    /// the caller), moving the rest of the structure block and the strings block, and updates the
    /// header. Both lengths are multiples of 4.
    pub(crate) fn resize_struct(
        &mut self,
        offset: usize,
        old_len: usize,
        new_len: usize,
    ) -> Result<(), Error> {
        let header = self.header;
        let start = header.struct_offset + offset;
        let old_end = start + old_len;
        let used_end = header.strings_end()?;
        if old_end > header.struct_end()? {
            return Err(Error::BadStructure);
        }
        let new_used_end = (used_end - old_len)
            .checked_add(new_len)
            .ok_or(Error::BadLayout)?;
        self.ensure_capacity(new_used_end)?;
        self.buffer.copy_within(old_end..used_end, start + new_len);
        if new_used_end < used_end {
            self.buffer[new_used_end..used_end].fill(0);
        }
        let grown = |value: usize| value - old_len + new_len;
        self.header.struct_size = grown(header.struct_size);
        self.header.strings_offset = grown(header.strings_offset);
        self.header.total_size = if header.total_size == used_end {
            new_used_end
        } else {
            header.total_size.max(new_used_end)
        };
        self.header.write(self.buffer)
    }
}

/// Checks a node or property name: not empty, no NUL, no `/`, at most 255 bytes (longer names are no
/// device tree's business and would only be a way to exhaust the buffer).
fn check_name(name: &str, is_node: bool) -> Result<(), Error> {
    let bytes = name.as_bytes();
    let bad_byte = bytes.iter().any(|&byte| byte == 0 || byte == b'/');
    if bytes.is_empty() || bytes.len() > 255 || bad_byte || (!is_node && bytes.contains(&b'@')) {
        return Err(Error::InvalidName);
    }
    Ok(())
}
