//! Reading a Linux boot's console log: the markers a good boot prints, in order.

use crate::error::XtaskError;
/// Checks the console log of a Linux boot with [`super::hotplug_init_script`] as `/init` on `cpus` CPUs: PSCI
/// 1.1 detected, every CPU brought up, each hotplug round and the script finished without a `FAIL`,
/// every CPU online at the end, and the kernel powered down. Returns the first thing missing.
pub fn check_linux_boot_log(log: &str, cpus: usize) -> Result<(), XtaskError> {
    let all_online = if cpus <= 1 {
        "0".to_string()
    } else {
        format!("0-{}", cpus - 1)
    };
    if let Some(failure) = log.lines().find(|line| line.contains("pkvm-init: FAIL")) {
        return Err(XtaskError::Check(format!(
            "the init script reported: {}",
            failure.trim()
        )));
    }
    let required = [
        "psci: PSCIv1.1 detected in firmware.".to_string(),
        format!("smp: Brought up 1 node, {cpus} CPU"),
        "Run /init as init process".to_string(),
        format!("pkvm-init: online: {all_online}\n"),
        "pkvm-init: done".to_string(),
        "reboot: Power down".to_string(),
    ];
    let log = log.replace("\r\n", "\n");
    let mut from = 0;
    for needle in &required {
        // In this order: each marker must come after the previous one.
        match log[from..].find(needle.as_str()) {
            Some(position) => from += position + needle.len(),
            None => {
                return Err(XtaskError::Check(format!(
                    "the boot log lacks `{}` (in order)",
                    needle.trim_end()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The markers of a good boot, as Linux and the init script print them.
    const GOOD_LOG: &str = "[    0.000000] psci: PSCIv1.1 detected in firmware.\r
[    0.206276] smp: Brought up 1 node, 4 CPUs\r
[    6.933292] Run /init as init process\r
pkvm-init: started, kernel 6.1.0-56-cloud-arm64, 4 cpus online: 0-3\r
[    7.538680] psci: CPU1 killed (polled 0 ms)\r
pkvm-init: hotplug round 1 done, online: 0-3\r
pkvm-init: online: 0-3\r
pkvm-init: done\r
[   11.149013] reboot: Power down\r
";

    #[test]
    fn boot_log_check_table() {
        let table: [(&str, String, usize, Result<(), &str>); 7] = [
            ("good", GOOD_LOG.to_string(), 4, Ok(())),
            (
                "other CPU count",
                GOOD_LOG.to_string(),
                2,
                Err("smp: Brought up 1 node, 2 CPU"),
            ),
            (
                "PSCI 1.0 only",
                GOOD_LOG.replace("PSCIv1.1", "PSCIv1.0"),
                4,
                Err("psci: PSCIv1.1"),
            ),
            (
                "CPU left offline",
                GOOD_LOG.replace("online: 0-3\r\npkvm", "online: 0-2\r\npkvm"),
                4,
                Err("online: 0-3"),
            ),
            (
                "script failure",
                GOOD_LOG.replace("pkvm-init: done", "pkvm-init: FAIL cpu2 still online"),
                4,
                Err("FAIL"),
            ),
            (
                "no power-off",
                GOOD_LOG.replace("reboot: Power down", "Kernel panic"),
                4,
                Err("Power down"),
            ),
            (
                "markers out of order",
                GOOD_LOG
                    .replace("pkvm-init: done\r\n", "")
                    .replace("Power down", "Power down\npkvm-init: done"),
                4,
                Err("Power down"),
            ),
        ];
        for (label, log, cpus, expected) in table {
            let result = check_linux_boot_log(&log, cpus);
            match expected {
                Ok(()) => assert!(result.is_ok(), "{label}: {result:?}"),
                Err(fragment) => {
                    let error = result.expect_err(label).to_string();
                    assert!(error.contains(fragment), "{label}: {error}");
                }
            }
        }
    }
}
