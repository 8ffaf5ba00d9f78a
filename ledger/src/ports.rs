//! Free loopback ports for servers a tool starts a moment later (dev clusters, local deployer
//! clusters, loadgen's embedded node).
//!
//! Why not simply bind port 0: the kernel hands out ports from its ephemeral range, the same
//! range every outgoing connection takes its local port from. Between choosing a port and the
//! server binding it (or while a member is stopped during a reset or a fault) a client
//! connection can take it, and the server then fails with "address in use". Ports chosen here
//! lie below the ephemeral range, where outgoing connections never land, and never repeat
//! within one process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const FIRST: u32 = 10_000;

/// Next candidate offset within the range (random start per process, so concurrent processes
/// rarely probe the same ports).
static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The kernel's ephemeral range (`net.ipv4.ip_local_port_range`), default 32768–60999.
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let v: Vec<u32> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() == 2).then(|| (v[0], v[1]))
        })
        .unwrap_or((32_768, 60_999))
}

/// A loopback port that is free now, outside the ephemeral range when the range leaves room
/// below it (else whatever port 0 gives).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let (low, high) = ephemeral_range();
    // Room below the ephemeral range, or above it when the range starts low.
    let (start, end) = if low > FIRST + 1_000 { (FIRST, low) } else if high < 64_000 { (high + 1, 65_535) } else { (0, 0) };
    if end > start {
        let span = end - start;
        if NEXT.load(Ordering::Relaxed) == u32::MAX {
            let _ = NEXT.compare_exchange(u32::MAX, rand::random::<u32>() % span, Ordering::Relaxed, Ordering::Relaxed);
        }
        for _ in 0..span.min(2_000) {
            let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % span;
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return Ok(port as u16);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_distinct_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_loopback_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice: {ports:?}");
        for p in ports {
            assert!(!(low..=high).contains(&(p as u32)), "port {p} is inside the ephemeral range {low}-{high}");
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
        }
    }
}
