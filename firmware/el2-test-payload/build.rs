//! Links the payload with its own linker script (payload.ld), whose `MEMORY` block (where the image lives,
//! and how many per-CPU stacks it reserves) comes from the selected board's map
//! (`board::link_image`).

fn main() {
    board::link_image("dram", board::Image::TestPayload, "payload.ld");
}
