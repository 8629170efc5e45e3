//! Pinning the calling thread to one CPU, and taking a CPU offline through sysfs (the demo's phase
//! marks: the monitor prints its erratum-call counts whenever a CPU goes off).

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    if cpu >= 8 * core::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("CPU {cpu} does not fit a cpu_set_t"));
    }
    // SAFETY: `cpu` was checked to lie within the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised `cpu_set_t` of the size passed; pid 0 is this thread.
    let result =
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) };
    if result == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// The CPU the calling thread runs on now.
pub fn current() -> Option<usize> {
    // SAFETY: `sched_getcpu` only reads the thread's state.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Takes `cpu` offline through sysfs (PSCI `CPU_OFF`).
pub fn take_offline(cpu: usize) -> Result<(), String> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    std::fs::write(&path, "0").map_err(|error| format!("writing 0 to {path}: {error}"))
}
