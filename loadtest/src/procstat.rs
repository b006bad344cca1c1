//! CPU time and RSS of a process from /proc (the server under test, or ourselves).

use std::fs;

#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, microseconds.
    pub cpu_us: u64,
    /// stime alone (time in the kernel), microseconds.
    pub sys_us: u64,
    /// VmRSS, KiB.
    pub rss_kb: u64,
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// (utime+stime, stime) in µs from the text of /proc/PID/stat.
pub fn parse_stat_cpu_us(stat: &str, ticks_per_s: u64) -> Option<(u64, u64)> {
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?; // field 14
    let stime: u64 = f.get(12)?.parse().ok()?; // field 15
    Some(((utime + stime) * 1_000_000 / ticks_per_s, stime * 1_000_000 / ticks_per_s))
}

/// VmRSS (KiB) from the text of /proc/PID/status.
pub fn parse_status_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples process `pid`; None once it has gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (cpu_us, sys_us) = parse_stat_cpu_us(&stat, clk_tck())?;
    Some(ProcSample { cpu_us, sys_us, rss_kb: parse_status_rss_kb(&status)? })
}

/// This process (the harness itself).
pub fn sample_self() -> ProcSample {
    sample(std::process::id()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (sock udo) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_us(stat, 100), Some((3_000_000, 500_000)));
        assert_eq!(parse_status_rss_kb("Name:\tx\nVmRSS:\t   12345 kB\nThreads: 2\n"), Some(12345));
        assert!(sample(std::process::id()).is_some());
    }
}
