//! Socket plumbing: the open-files limit, name resolution and non-blocking connects from a
//! chosen loopback source address (so one run can exceed ~28k sockets per destination).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::FromRawFd;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// First IPv4 address of `host:port`.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddrV4> {
    for a in (host, port).to_socket_addrs()? {
        if let SocketAddr::V4(v4) = a {
            return Ok(v4);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: no IPv4 address")))
}

/// Source address number `n` of `k` (127.0.0.1, 127.0.0.2, …), or None when `k == 0`
/// (the kernel picks the source).
pub fn source_ip(n: u64, k: u32) -> Option<Ipv4Addr> {
    if k == 0 {
        return None;
    }
    let x = 1 + (n % k as u64) as u32; // 1..=k, spills into 127.0.x.y past 254
    Some(Ipv4Addr::from(0x7F00_0000u32 + x))
}

/// Starts a non-blocking TCP connect to `dst`, bound to `src` if given. The connect completes
/// (or fails) asynchronously: wait for writability, then check `take_error`.
pub fn connect(src: Option<Ipv4Addr>, dst: SocketAddrV4) -> io::Result<mio::net::TcpStream> {
    // SAFETY: raw socket calls; the fd is owned by the TcpStream right after creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const libc::c_void, len);
        if let Some(ip) = src {
            // Defer the port choice to connect() so ports are shared across destinations.
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                len,
            );
            let sa = sockaddr(SocketAddrV4::new(ip, 0));
            if libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let sa = sockaddr(dst);
        let rc = libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(mio::net::TcpStream::from_std(stream))
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_cycle() {
        assert_eq!(source_ip(0, 0), None);
        assert_eq!(source_ip(0, 3), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_ip(5, 3), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_ip(299, 300), Some(Ipv4Addr::new(127, 0, 1, 44)));
    }
}
