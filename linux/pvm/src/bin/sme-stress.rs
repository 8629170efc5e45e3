//! `sme-stress --cpu K`: pinned to CPU K, stores in SME Streaming mode until killed (see
//! `pvm::sme`). Prints `sme-stress: CPU K: streaming stores running, SVL N bytes` once its first
//! batch ran, or `sme-stress: CPU K: FAIL ...` and exits 1.

use pvm::args::Options;
use std::process::ExitCode;

fn run() -> Result<(), String> {
    let options = Options::parse(std::env::args().skip(1))?;
    options.only(&["cpu"])?;
    let cpu = usize::try_from(options.number("cpu", 0)?).map_err(|error| error.to_string())?;
    pvm::cpu::pin_to(cpu)?;
    if !pvm::sme::available() {
        return Err(format!(
            "CPU {cpu}: the kernel offers no SME to user space (HWCAP2_SME clear)"
        ));
    }
    let mut buffer = pvm::sme::Buffer::new();
    let vector_length = pvm::sme::batch(&mut buffer);
    println!(
        "sme-stress: CPU {cpu}: streaming stores running, SVL {vector_length} bytes, {} stores per batch",
        2 * pvm::sme::BATCH
    );
    loop {
        pvm::sme::batch(&mut buffer);
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("sme-stress: FAIL {error}");
            ExitCode::FAILURE
        }
    }
}
