//! A few `--name value` options, without a parser dependency (the binaries must stay small: they
//! travel in an uncompressed initramfs).

/// Options given as `--name value` pairs.
pub struct Options {
    pairs: Vec<(String, String)>,
}

impl Options {
    /// Reads `--name value` pairs from `arguments` (the program name excluded).
    pub fn parse(arguments: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut arguments = arguments.peekable();
        while let Some(argument) = arguments.next() {
            let name = argument.strip_prefix("--").ok_or_else(|| {
                format!("unexpected argument {argument:?} (options are --name value)")
            })?;
            let value = arguments
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_string(), value));
        }
        Ok(Self { pairs })
    }

    /// The number given as `--name`, or `default`; refuses anything else but the `known` names.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.pairs.iter().rev().find(|(key, _)| key == name) {
            None => Ok(default),
            Some((_, value)) => {
                let parsed = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => value.parse(),
                };
                parsed.map_err(|error| format!("--{name} {value:?}: {error}"))
            }
        }
    }

    /// Fails on an option not in `known` (a typo must not silently use a default).
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(key, _)| !known.contains(&key.as_str()))
        {
            Some((key, _)) => Err(format!(
                "unknown option --{key} (known: {})",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }
}
