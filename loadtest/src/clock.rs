//! One monotonic clock shared by the publisher and every receiver of this process.

/// Nanoseconds of CLOCK_MONOTONIC (the vDSO makes this a ~20 ns call, no syscall).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Unix time in whole seconds (for the REST `auth_timestamp`).
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub const SEC: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;
