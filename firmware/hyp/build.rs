//! Links the hypervisor with its own linker script (hyp.ld), whose `MEMORY` block (where the image lives,
//! and how many per-CPU stacks it reserves) comes from the selected board's map
//! (`board::link_image`).

fn main() {
    board::link_image("hyp", board::Image::Hypervisor, "hyp.ld");
}
