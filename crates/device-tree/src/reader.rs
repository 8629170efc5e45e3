//! Read access: nodes by path, their properties and children, and the facts a monitor needs (memory,
//! CPUs, `/chosen`).

use crate::Error;
use crate::format::{Header, Token, read_u32, string_at, token_at};

/// A validated, read-only view of a flattened device tree blob.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree<'a> {
    blob: &'a [u8],
    header: Header,
}

/// A node of the tree: its name and where it starts in the structure block.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    tree: DeviceTree<'a>,
    /// Offset of the node's `FDT_BEGIN_NODE` token in the structure block.
    offset: usize,
    name: &'a [u8],
}

/// A property: its name and its raw (big-endian) value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    /// The property's name.
    pub name: &'a str,
    /// The raw value; cells are big-endian.
    pub value: &'a [u8],
}

/// A range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

/// What the structure walk finds directly inside a node (deeper levels are skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A property token at `offset`.
    Property {
        offset: usize,
        name_offset: usize,
        value: &'a [u8],
    },
    /// A child node whose `FDT_BEGIN_NODE` is at `offset`.
    Child { offset: usize, name: &'a [u8] },
    /// The node's own `FDT_END_NODE`, at `offset`; always the last item.
    End { offset: usize },
}

/// Walks the items directly inside one node; stops after the first error.
pub(crate) struct Items<'a> {
    structure: &'a [u8],
    offset: usize,
    finished: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Item<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let result = self.step();
        if !matches!(result, Ok(Item::Property { .. } | Item::Child { .. })) {
            self.finished = true;
        }
        Some(result)
    }
}

impl<'a> Items<'a> {
    fn step(&mut self) -> Result<Item<'a>, Error> {
        loop {
            let offset = self.offset;
            let (token, next) = token_at(self.structure, offset)?;
            self.offset = next;
            match token {
                Token::Nop => {}
                Token::Property { name_offset, value } => {
                    return Ok(Item::Property {
                        offset,
                        name_offset,
                        value,
                    });
                }
                Token::BeginNode { name } => {
                    self.offset = skip_subtree(self.structure, next)?;
                    return Ok(Item::Child { offset, name });
                }
                Token::EndNode => return Ok(Item::End { offset }),
                Token::End => return Err(Error::BadStructure),
            }
        }
    }
}

/// Given the offset just after a node's `FDT_BEGIN_NODE`, returns the offset just after its
/// `FDT_END_NODE`. Every token is at least 4 bytes long, so the walk ends.
pub(crate) fn skip_subtree(structure: &[u8], mut offset: usize) -> Result<usize, Error> {
    let mut depth = 1usize;
    loop {
        let (token, next) = token_at(structure, offset)?;
        offset = next;
        match token {
            Token::BeginNode { .. } => depth += 1,
            Token::EndNode => {
                depth -= 1;
                if depth == 0 {
                    return Ok(offset);
                }
            }
            Token::Property { .. } | Token::Nop => {}
            Token::End => return Err(Error::BadStructure),
        }
    }
}

/// Whether the node name `name` answers to the path component `component`: equal, or equal up to the
/// unit address when the component has none (`cpus` finds `cpus`, `memory` finds `memory@40000000`).
fn name_matches(name: &[u8], component: &[u8]) -> bool {
    if name == component {
        return true;
    }
    !component.contains(&b'@') && name.split(|&byte| byte == b'@').next() == Some(component)
}

/// Decodes a value made of `cells` big-endian 32-bit cells (1 or 2).
pub(crate) fn read_cells(value: &[u8], cells: usize) -> Result<u64, Error> {
    let cell = |index: usize| {
        read_u32(value, index * 4)
            .map(u64::from)
            .map_err(|_| Error::BadPropertyValue)
    };
    match cells {
        1 => cell(0),
        2 => Ok((cell(0)? << 32) | cell(1)?),
        _ => Err(Error::BadPropertyValue),
    }
}

/// Interprets a property value as one NUL-terminated UTF-8 string.
fn as_str(value: &[u8]) -> Result<&str, Error> {
    let (&last, text) = value.split_last().ok_or(Error::BadPropertyValue)?;
    if last != 0 {
        return Err(Error::BadPropertyValue);
    }
    core::str::from_utf8(text).map_err(|_| Error::BadPropertyValue)
}

impl<'a> DeviceTree<'a> {
    /// Checks the header of the blob at the start of `bytes` (which may be longer than the blob) and
    /// returns a view of it.
    ///
    /// ```
    /// # use device_tree::{DeviceTree, Error};
    /// assert_eq!(DeviceTree::new(&[0u8; 64]).unwrap_err(), Error::BadMagic);
    /// ```
    pub fn new(bytes: &'a [u8]) -> Result<Self, Error> {
        let header = Header::parse(bytes)?;
        Ok(Self {
            blob: bytes,
            header,
        })
    }

    /// A view over a blob whose header the caller has already checked.
    pub(crate) fn from_checked(bytes: &'a [u8], header: Header) -> Self {
        Self {
            blob: bytes,
            header,
        }
    }

    /// The blob's `totalsize`: how many bytes of the buffer it occupies, including free space.
    pub fn total_size(&self) -> usize {
        self.header.total_size
    }

    /// The physical ID of the boot CPU from the header.
    pub fn boot_cpu_id(&self) -> u32 {
        self.header.boot_cpu
    }

    pub(crate) fn structure(&self) -> &'a [u8] {
        // Header::parse checked that the block lies inside the blob.
        self.blob
            .get(self.header.struct_offset..self.header.struct_offset + self.header.struct_size)
            .unwrap_or(&[])
    }

    pub(crate) fn strings(&self) -> &'a [u8] {
        // Header::parse checked that the block lies inside the blob.
        self.blob
            .get(self.header.strings_offset..self.header.strings_offset + self.header.strings_size)
            .unwrap_or(&[])
    }

    pub(crate) fn items(&self, node_offset: usize) -> Result<Items<'a>, Error> {
        let (token, next) = token_at(self.structure(), node_offset)?;
        match token {
            Token::BeginNode { .. } => Ok(Items {
                structure: self.structure(),
                offset: next,
                finished: false,
            }),
            _ => Err(Error::BadStructure),
        }
    }

    pub(crate) fn property_name(&self, name_offset: usize) -> Result<&'a [u8], Error> {
        string_at(self.strings(), name_offset)
    }

    /// The root node.
    pub fn root(&self) -> Result<Node<'a>, Error> {
        let mut offset = 0;
        loop {
            let (token, next) = token_at(self.structure(), offset)?;
            match token {
                Token::Nop => offset = next,
                Token::BeginNode { name } => {
                    return Ok(Node {
                        tree: *self,
                        offset,
                        name,
                    });
                }
                _ => return Err(Error::BadStructure),
            }
        }
    }

    /// The node at `path` (`/`, `/cpus`, `/cpus/cpu@1`; a component without unit address matches the
    /// first node of that name with any unit address).
    pub fn find_node(&self, path: &str) -> Result<Node<'a>, Error> {
        let mut node = self.root()?;
        for component in path.split('/').filter(|component| !component.is_empty()) {
            node = node.child(component)?.ok_or(Error::NodeNotFound)?;
        }
        Ok(node)
    }

    /// The value of property `name` of the node at `path`.
    pub fn property(&self, path: &str, name: &str) -> Result<&'a [u8], Error> {
        self.find_node(path)?
            .property(name)?
            .ok_or(Error::PropertyNotFound)
    }

    /// The first range of the first memory node (`device_type = "memory"` or named `memory@...`).
    pub fn memory(&self) -> Result<MemoryRange, Error> {
        let root = self.root()?;
        let (address_cells, size_cells) = root.cells()?;
        for child in root.children()? {
            let child = child?;
            let is_memory = child.name_matches("memory")
                || child.property_str("device_type")? == Some("memory");
            if is_memory {
                let reg = child.property("reg")?.ok_or(Error::PropertyNotFound)?;
                return decode_range(reg, address_cells, size_cells);
            }
        }
        Err(Error::NodeNotFound)
    }

    /// The MPIDR (`reg`) of every CPU node under `/cpus`, in tree order.
    pub fn cpus(&self) -> Result<Cpus<'a>, Error> {
        let cpus = self.find_node("/cpus")?;
        let (address_cells, _) = cpus.cells()?;
        Ok(Cpus {
            children: cpus.children()?,
            address_cells,
        })
    }

    /// How many CPU nodes `/cpus` has.
    pub fn cpu_count(&self) -> Result<usize, Error> {
        let mut count = 0;
        for mpidr in self.cpus()? {
            mpidr?;
            count += 1;
        }
        Ok(count)
    }

    /// Property `name` of `/chosen`, or `None` when `/chosen` or the property is absent.
    pub fn chosen_property(&self, name: &str) -> Result<Option<&'a [u8]>, Error> {
        match self.find_node("/chosen") {
            Ok(chosen) => chosen.property(name),
            Err(Error::NodeNotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `/chosen/bootargs`, the kernel command line.
    pub fn bootargs(&self) -> Result<Option<&'a str>, Error> {
        self.chosen_property("bootargs")?.map(as_str).transpose()
    }

    /// `/chosen/stdout-path`, the console.
    pub fn stdout_path(&self) -> Result<Option<&'a str>, Error> {
        self.chosen_property("stdout-path")?.map(as_str).transpose()
    }

    /// The initial RAM disk from `/chosen/linux,initrd-start` and `linux,initrd-end` (each 32 or 64
    /// bits); `size` is end - start.
    pub fn initrd(&self) -> Result<Option<MemoryRange>, Error> {
        let start = self.chosen_property("linux,initrd-start")?;
        let end = self.chosen_property("linux,initrd-end")?;
        let (Some(start), Some(end)) = (start, end) else {
            return Ok(None);
        };
        let start = read_cells(start, start.len() / 4)?;
        let end = read_cells(end, end.len() / 4)?;
        let size = end.checked_sub(start).ok_or(Error::BadPropertyValue)?;
        Ok(Some(MemoryRange { base: start, size }))
    }
}

impl<'a> DeviceTree<'a> {
    /// Calls `visit` for every node below the root, depth first in blob order, with the cells its
    /// `reg` is written in (its parent's `#address-cells` and `#size-cells`). Nodes deeper than
    /// [`MAX_WALK_DEPTH`] are not visited (a malicious or broken tree cannot exhaust the stack), nor
    /// the children of a bus with more than two address cells (PCI).
    pub fn walk_nodes(&self, visit: &mut dyn FnMut(Node<'a>, Cells)) -> Result<(), Error> {
        fn walk<'a>(
            node: Node<'a>,
            depth: usize,
            visit: &mut dyn FnMut(Node<'a>, Cells),
        ) -> Result<(), Error> {
            if depth >= MAX_WALK_DEPTH {
                return Ok(());
            }
            // A bus whose addresses are not plain numbers (PCI's three cells) has no children this
            // walk can describe: they are not visited.
            let (address_cells, size_cells) = match node.cells() {
                Ok(cells) => cells,
                Err(Error::BadPropertyValue) => return Ok(()),
                Err(error) => return Err(error),
            };
            let cells = Cells {
                address: address_cells,
                size: size_cells,
            };
            for child in node.children()? {
                let child = child?;
                visit(child, cells);
                walk(child, depth + 1, visit)?;
            }
            Ok(())
        }
        walk(self.root()?, 0, visit)
    }
}

/// How deep [`DeviceTree::walk_nodes`] goes below the root.
pub const MAX_WALK_DEPTH: usize = 8;

/// The cells a node's `reg` is written in: its parent's `#address-cells` and `#size-cells`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    /// `#address-cells` (1 or 2).
    pub address: usize,
    /// `#size-cells` (0, 1 or 2).
    pub size: usize,
}

/// The (address, size) pairs of a `reg` property; see [`Node::reg`].
pub struct RegRanges<'a> {
    value: &'a [u8],
    cells: Cells,
}

impl Iterator for RegRanges<'_> {
    type Item = Result<MemoryRange, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.value.is_empty() {
            return None;
        }
        let entry = (self.cells.address + self.cells.size) * 4;
        if entry == 0 || self.value.len() < entry || self.cells.size == 0 {
            self.value = &[];
            return Some(Err(Error::BadPropertyValue));
        }
        let (this, rest) = self.value.split_at(entry);
        self.value = rest;
        Some(decode_range(this, self.cells.address, self.cells.size))
    }
}

/// Decodes the first (address, size) pair of a `reg` value.
fn decode_range(reg: &[u8], address_cells: usize, size_cells: usize) -> Result<MemoryRange, Error> {
    let base = read_cells(reg, address_cells)?;
    let size_bytes = reg
        .get(address_cells * 4..)
        .ok_or(Error::BadPropertyValue)?;
    let size = read_cells(size_bytes, size_cells)?;
    Ok(MemoryRange { base, size })
}

impl<'a> Node<'a> {
    /// The node's name, with its unit address (`cpu@1`); empty for the root.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Where the node starts in the structure block: names it for
    /// [`DeviceTreeEditor::remove_nodes`](crate::DeviceTreeEditor::remove_nodes).
    pub fn structure_offset(&self) -> usize {
        self.offset
    }

    /// The ranges of the node's `reg` property, written in `cells` (from
    /// [`DeviceTree::walk_nodes`]); empty when it has none.
    pub fn reg(&self, cells: Cells) -> Result<RegRanges<'a>, Error> {
        Ok(RegRanges {
            value: self.property("reg")?.unwrap_or(&[]),
            cells,
        })
    }

    /// Whether one of the strings of the node's `compatible` list is `compatible`.
    pub fn is_compatible(&self, compatible: &str) -> Result<bool, Error> {
        let Some(list) = self.property("compatible")? else {
            return Ok(false);
        };
        Ok(list
            .split(|&byte| byte == 0)
            .any(|entry| entry == compatible.as_bytes()))
    }

    fn name_matches(&self, component: &str) -> bool {
        name_matches(self.name, component.as_bytes())
    }

    /// The node's properties, in blob order.
    pub fn properties(&self) -> Result<Properties<'a>, Error> {
        Ok(Properties {
            tree: self.tree,
            items: self.tree.items(self.offset)?,
        })
    }

    /// The node's direct children, in blob order.
    pub fn children(&self) -> Result<Children<'a>, Error> {
        Ok(Children {
            tree: self.tree,
            items: self.tree.items(self.offset)?,
        })
    }

    /// The first direct child answering to `component` (see [`DeviceTree::find_node`]).
    pub fn child(&self, component: &str) -> Result<Option<Node<'a>>, Error> {
        for child in self.children()? {
            let child = child?;
            if child.name_matches(component) {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }

    /// The value of property `name`, or `None`.
    pub fn property(&self, name: &str) -> Result<Option<&'a [u8]>, Error> {
        for property in self.properties()? {
            let property = property?;
            if property.name == name {
                return Ok(Some(property.value));
            }
        }
        Ok(None)
    }

    /// The value of a string property, or `None`.
    pub fn property_str(&self, name: &str) -> Result<Option<&'a str>, Error> {
        self.property(name)?.map(as_str).transpose()
    }

    /// `#address-cells` and `#size-cells` for this node's children (defaults 2 and 1).
    pub fn cells(&self) -> Result<(usize, usize), Error> {
        let read = |name: &str, default: usize| -> Result<usize, Error> {
            match self.property(name)? {
                None => Ok(default),
                Some(value) => {
                    let cells = crate::format::to_usize(read_u32(value, 0)?)?;
                    if cells > 2 {
                        Err(Error::BadPropertyValue)
                    } else {
                        Ok(cells)
                    }
                }
            }
        };
        Ok((read("#address-cells", 2)?, read("#size-cells", 1)?))
    }
}

/// The properties of one node; see [`Node::properties`].
pub struct Properties<'a> {
    tree: DeviceTree<'a>,
    items: Items<'a>,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Result<Property<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.items.next()? {
                Err(error) => return Some(Err(error)),
                Ok(Item::Property {
                    name_offset, value, ..
                }) => {
                    let name = self.tree.property_name(name_offset).and_then(|name| {
                        core::str::from_utf8(name).map_err(|_| Error::BadStructure)
                    });
                    return Some(name.map(|name| Property { name, value }));
                }
                Ok(Item::Child { .. }) => {}
                Ok(Item::End { .. }) => return None,
            }
        }
    }
}

/// The children of one node; see [`Node::children`].
pub struct Children<'a> {
    tree: DeviceTree<'a>,
    items: Items<'a>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Node<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.items.next()? {
                Err(error) => return Some(Err(error)),
                Ok(Item::Child { offset, name }) => {
                    return Some(Ok(Node {
                        tree: self.tree,
                        offset,
                        name,
                    }));
                }
                Ok(Item::Property { .. }) => {}
                Ok(Item::End { .. }) => return None,
            }
        }
    }
}

/// Whether a child of `/cpus` describes a CPU (rather than `cpu-map` or an idle-state node).
pub(crate) fn is_cpu_node(node: &Node<'_>) -> Result<bool, Error> {
    Ok(node.property_str("device_type")? == Some("cpu") || node.name.starts_with(b"cpu@"))
}

/// The MPIDRs of the CPU nodes; see [`DeviceTree::cpus`].
pub struct Cpus<'a> {
    children: Children<'a>,
    address_cells: usize,
}

impl Iterator for Cpus<'_> {
    type Item = Result<u64, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let node = match self.children.next()? {
                Ok(node) => node,
                Err(error) => return Some(Err(error)),
            };
            match is_cpu_node(&node) {
                Ok(false) => {}
                Ok(true) => {
                    return Some(
                        node.property("reg")
                            .and_then(|reg| reg.ok_or(Error::PropertyNotFound))
                            .and_then(|reg| read_cells(reg, self.address_cells)),
                    );
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matching_follows_the_unit_address_rule() {
        let table: [(&[u8], &[u8], bool); 6] = [
            (b"cpus", b"cpus", true),
            (b"memory@40000000", b"memory", true),
            (b"memory@40000000", b"memory@40000000", true),
            (b"memory@40000000", b"memory@0", false),
            (b"cpus", b"cpu", false),
            (b"cpu-map", b"cpu", false),
        ];
        for (name, component, expected) in table {
            assert_eq!(
                name_matches(name, component),
                expected,
                "{name:?} {component:?}"
            );
        }
    }

    #[test]
    fn cells_decode_one_or_two_and_reject_others() {
        let value = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(read_cells(&value, 1), Ok(1));
        assert_eq!(read_cells(&value, 2), Ok(0x1_0000_0002));
        assert_eq!(read_cells(&value, 3), Err(Error::BadPropertyValue));
        assert_eq!(read_cells(&value[..3], 1), Err(Error::BadPropertyValue));
    }
}
