//! Links the monitor with its own linker script (monitor.ld), whose `MEMORY` block (where the image lives,
//! and how many per-CPU stacks it reserves) comes from the selected board's map
//! (`board::link_image`).

fn main() {
    board::link_image("secure_ram", board::Image::Monitor, "monitor.ld");
}
