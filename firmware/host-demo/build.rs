//! Links the host demo with its own linker script (host.ld), whose `MEMORY` block (where the image lives,
//! and how many per-CPU stacks it reserves) comes from the selected board's map
//! (`board::link_image`).

fn main() {
    board::link_image("host", board::Image::HostDemo, "host.ld");
}
