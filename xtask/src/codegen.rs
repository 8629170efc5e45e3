//! Checks of the monitor's compiled code that its assembly relies on.
//!
//! The lower-EL FIQ vector (`fiq_fast_entry` in `firmware/monitor/src/exceptions.S`) saves only a
//! few registers before it calls the Rust handler `handle_fiq_fast` (`services/cpu.rs`), which
//! answers the rendezvous SGI. That is sound only while the compiled handler is a leaf (no call,
//! no branch out of itself, no stack-pointer change) that writes no general-purpose register but
//! those the entry saved. [`check_fiq_fast_path`] proves it on every monitor build: it
//! disassembles the ELF with `llvm-objdump`, reads the saved set from the vector entry's own stores
//! before its `bl handle_fiq_fast`, and fails on any instruction of the handler that writes a
//! register outside that set or leaves the function other than by `ret`.

use crate::error::XtaskError;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The fast FIQ handler's symbol.
const HANDLER: &str = "handle_fiq_fast";
/// The label of its vector entry (`exceptions.S`), up to the next label.
const VECTORS: &str = "fiq_fast_entry_start";

/// Checks the monitor ELF at `elf` (see the module documentation); prints the saved set.
pub fn check_fiq_fast_path(elf: &Path) -> Result<(), XtaskError> {
    let handler = disassemble(elf, HANDLER)?;
    let vectors = disassemble(elf, VECTORS)?;
    let saved = saved_before_call(&vectors, HANDLER).map_err(XtaskError::Check)?;
    let written = check_leaf(&handler).map_err(XtaskError::Check)?;
    let unsaved: Vec<&String> = written.difference(&saved).collect();
    if !unsaved.is_empty() {
        return Err(XtaskError::Check(format!(
            "{}: {HANDLER} writes {unsaved:?}, which its FIQ entry does not save (saved: {saved:?}); \
             save them in fiq_fast_entry (exceptions.S) or change the handler",
            elf.display()
        )));
    }
    println!(
        "xtask: codegen {HANDLER}: a leaf of {} instructions writing {written:?}, all saved by its entry",
        handler.len()
    );
    Ok(())
}

/// One disassembled instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    address: u64,
    mnemonic: String,
    operands: Vec<String>,
    /// The operand text as printed (for the writeback test and branch targets).
    text: String,
    /// The symbol objdump names after a branch target (`<symbol>`), without an offset.
    symbol: Option<String>,
}

/// `llvm-objdump`'s disassembly of `symbol` in `elf`, parsed.
fn disassemble(elf: &Path, symbol: &str) -> Result<Vec<Instruction>, XtaskError> {
    let output = Command::new("llvm-objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(format!("--disassemble-symbols={symbol}"))
        .arg(elf)
        .output()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => XtaskError::MissingTool {
                tool: "llvm-objdump",
                install: "apt-get install --no-install-recommends llvm".into(),
            },
            _ => XtaskError::spawn("llvm-objdump", error),
        })?;
    if !output.status.success() {
        return Err(XtaskError::failed_with_output(
            format!(
                "llvm-objdump --disassemble-symbols={symbol} {}",
                elf.display()
            ),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    let instructions = parse(&String::from_utf8_lossy(&output.stdout));
    if instructions.is_empty() {
        return Err(XtaskError::Unexpected(format!(
            "{}: no code for {symbol}",
            elf.display()
        )));
    }
    Ok(instructions)
}

/// Parses `llvm-objdump -d --no-show-raw-insn` lines of the form `addr: \tmnemonic\toperands`.
fn parse(text: &str) -> Vec<Instruction> {
    text.lines()
        .filter_map(|line| {
            let (address, rest) = line.split_once(':')?;
            let address = u64::from_str_radix(address.trim(), 16).ok()?;
            let rest = rest.trim();
            let (mnemonic, operands) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(mnemonic, operands)| {
                    (mnemonic, operands.trim())
                });
            if mnemonic.is_empty() {
                return None;
            }
            // Drop the symbolic comment (`<symbol+0x10>`) and split at commas outside brackets.
            let operands_text = operands.split(" <").next().unwrap_or("").trim().to_string();
            let symbol = operands
                .split_once(" <")
                .map(|(_, symbol)| symbol.trim_end_matches('>').to_string())
                .filter(|symbol| !symbol.contains('+'));
            let mut split = Vec::new();
            let mut depth = 0;
            let mut current = String::new();
            for character in operands_text.chars() {
                match character {
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth -= 1,
                    _ => {}
                }
                if character == ',' && depth == 0 {
                    split.push(current.trim().to_string());
                    current.clear();
                } else {
                    current.push(character);
                }
            }
            if !current.trim().is_empty() {
                split.push(current.trim().to_string());
            }
            Some(Instruction {
                address,
                mnemonic: mnemonic.to_ascii_lowercase(),
                operands: split,
                text: operands_text,
                symbol,
            })
        })
        .collect()
}

/// A general-purpose register operand as its 64-bit name (`w9` → `x9`), `sp`, or `None`.
fn register(operand: &str) -> Option<String> {
    let operand = operand.trim().to_ascii_lowercase();
    if operand == "sp" || operand == "wsp" {
        return Some("sp".into());
    }
    if operand == "xzr" || operand == "wzr" {
        return None;
    }
    let number = operand
        .strip_prefix('x')
        .or_else(|| operand.strip_prefix('w'))?;
    let number: u8 = number.parse().ok()?;
    (number <= 30).then(|| format!("x{number}"))
}

/// The registers stored by the `str`/`stp` instructions of the vector entry (the 0x80-byte slot)
/// that ends in `bl <callee>`, up to that call.
fn saved_before_call(vectors: &[Instruction], callee: &str) -> Result<BTreeSet<String>, String> {
    let call = vectors
        .iter()
        .position(|instruction| {
            instruction.mnemonic == "bl" && instruction.symbol.as_deref() == Some(callee)
        })
        .ok_or_else(|| format!("no `bl {callee}` in {VECTORS}"))?;
    let slot = vectors[call].address & !0x7f;
    let mut saved = BTreeSet::new();
    for instruction in vectors[..call]
        .iter()
        .filter(|instruction| instruction.address & !0x7f == slot)
    {
        let stored = match instruction.mnemonic.as_str() {
            "stp" => 2,
            "str" | "stur" => 1,
            _ => 0,
        };
        saved.extend(
            instruction
                .operands
                .iter()
                .take(stored)
                .filter_map(|operand| register(operand)),
        );
    }
    // The call itself writes x30, so the entry must have saved it too; the set covers it.
    if !saved.contains("x30") {
        return Err(format!(
            "the FIQ entry calls {callee} without saving x30 (saved: {saved:?})"
        ));
    }
    Ok(saved)
}

/// Mnemonics that write no general-purpose register (stores, compares, barriers, system-register
/// writes, hints); every other instruction writes its first operand.
const NO_DESTINATION: &[&str] = &[
    "str", "strb", "strh", "stur", "sturb", "sturh", "stp", "stnp", "stlr", "stlrb", "stlrh",
    "stlur", "cmp", "cmn", "tst", "ccmp", "ccmn", "msr", "dsb", "dmb", "isb", "sev", "sevl", "nop",
    "wfe", "wfi", "yield", "prfm", "ret", "b", "cbz", "cbnz", "tbz", "tbnz",
];

/// Checks that `handler` is a leaf (no call, no branch out of its own range, no `sp` change, `ret`
/// only through x30) and returns the registers it writes.
fn check_leaf(handler: &[Instruction]) -> Result<BTreeSet<String>, String> {
    let start = handler.first().map_or(0, |instruction| instruction.address);
    let end = handler.last().map_or(0, |instruction| instruction.address);
    let mut written = BTreeSet::new();
    for instruction in handler {
        let mnemonic = instruction.mnemonic.as_str();
        let branch = mnemonic == "b"
            || mnemonic.starts_with("b.")
            || mnemonic.starts_with("cb")
            || mnemonic.starts_with("tb");
        let bad = |why: &str| {
            Err(format!(
                "{HANDLER} at {:#x}: `{mnemonic} {}` {why}",
                instruction.address, instruction.text
            ))
        };
        if mnemonic.starts_with("bl") || mnemonic.starts_with("br") || mnemonic == "blr" {
            return bad("calls or jumps through a register: the handler must be a leaf");
        }
        if mnemonic.starts_with("ret") && !(mnemonic == "ret" && instruction.operands.is_empty()) {
            return bad("returns through another register than x30");
        }
        if matches!(mnemonic, "svc" | "hvc" | "smc" | "eret" | "brk" | "hlt") {
            return bad("leaves the handler");
        }
        if branch {
            let target = instruction
                .operands
                .last()
                .and_then(|operand| u64::from_str_radix(operand.trim_start_matches("0x"), 16).ok());
            match target {
                Some(target) if (start..=end).contains(&target) => {}
                _ => return bad("branches out of the handler (a tail call?)"),
            }
        }
        let mut destinations = 0;
        if !NO_DESTINATION.contains(&mnemonic) && !branch {
            destinations = 1;
            if matches!(mnemonic, "ldp" | "ldnp" | "ldpsw" | "ldxp" | "ldaxp") {
                destinations = 2;
            }
        }
        if mnemonic.starts_with("stxr") || mnemonic.starts_with("stlxr") {
            // The status register.
            destinations = 1;
        }
        let mut registers: Vec<String> = instruction
            .operands
            .iter()
            .take(destinations)
            .filter_map(|operand| register(operand))
            .collect();
        // Pre- or post-index writeback changes the base register.
        if (instruction.text.contains("]!") || instruction.text.contains("], "))
            && let Some(base) = instruction
                .text
                .split('[')
                .nth(1)
                .and_then(|inside| inside.split([',', ']']).next())
                .and_then(register)
        {
            registers.push(base);
        }
        if registers.iter().any(|register| register == "sp") {
            return bad("changes sp");
        }
        written.extend(registers);
    }
    if !handler
        .iter()
        .any(|instruction| instruction.mnemonic == "ret")
    {
        return Err(format!("{HANDLER} has no ret"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS_TEXT: &str = "
 e000c00:      \tstp\tx0, x8, [sp, #-0x30]!
 e000c04:      \tstp\tx9, x10, [sp, #0x10]
 e000c08:      \tstr\tx30, [sp, #0x20]
 e000c0c:      \tbl\t0xe004c00 <handle_fiq_fast>
 e000c10:      \tcmn\tx0, #0x1
";

    fn handler(extra: &str) -> Vec<Instruction> {
        parse(&format!(
            "
 e004c00:      \tmrs\tx8, ICC_IAR0_EL1
 e004c04:      \tand\tw9, w8, #0xffffff
 e004c08:      \tcmp\tw9, #0x8
 e004c0c:      \tb.ne\t0xe004c1c <handle_fiq_fast+0x1c>
 e004c10:      \tldar\tx10, [x9]
{extra}
 e004c18:      \tmov\tx0, #-0x1
 e004c1c:      \tret
"
        ))
    }

    #[test]
    fn the_entry_saves_what_it_stores() {
        let saved = saved_before_call(&parse(VECTORS_TEXT), HANDLER).unwrap();
        let expected: BTreeSet<String> = ["x0", "x8", "x9", "x10", "x30"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        assert_eq!(saved, expected);
    }

    #[test]
    fn a_leaf_within_the_saved_set_passes() {
        let written = check_leaf(&handler(" e004c14:      \tstlr\tx10, [x9]")).unwrap();
        let saved = saved_before_call(&parse(VECTORS_TEXT), HANDLER).unwrap();
        assert!(written.is_subset(&saved), "{written:?}");
        assert!(written.contains("x0") && written.contains("x10"));
    }

    #[test]
    fn an_unsaved_register_is_seen() {
        let written = check_leaf(&handler(" e004c14:      \tldp\tx11, x1, [x9]")).unwrap();
        assert!(
            written.contains("x11") && written.contains("x1"),
            "{written:?}"
        );
        let written = check_leaf(&handler(" e004c14:      \tldr\tx2, [x12], #0x8")).unwrap();
        assert!(written.contains("x12"), "{written:?}");
    }

    #[test]
    fn calls_tail_calls_and_stack_changes_fail() {
        for extra in [
            " e004c14:      \tbl\t0xe009000 <report>",
            " e004c14:      \tb\t0xe009000 <report>",
            " e004c14:      \tblr\tx9",
            " e004c14:      \tsub\tsp, sp, #0x10",
            " e004c14:      \tstp\tx29, x30, [sp, #-0x10]!",
        ] {
            assert!(check_leaf(&handler(extra)).is_err(), "{extra}");
        }
    }
}
