//! What the harness reads about processes from Linux's /proc: CPU time and resident memory.

use std::time::Duration;

/// Clock ticks per second of /proc/*/stat's times (USER_HZ: 100 on every Linux build
/// that matters here; reading it needs libc's sysconf).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of a process, if it can be read.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time(&format!("/proc/{pid}/stat"))
}

pub fn cpu_time_of_self() -> Duration {
    cpu_time("/proc/self/stat").unwrap_or_default()
}

fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Resident memory of a process in bytes (VmRSS), if it can be read.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
