//! IPv4 CIDR arithmetic, enough to tell whether the database's address lies inside its VPC.

use std::net::Ipv4Addr;

/// Whether `ip` lies in `cidr` (`a.b.c.d/n`). A malformed CIDR contains nothing.
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let Some((base, bits)) = cidr.split_once('/') else { return false };
    let (Ok(base), Ok(bits)) = (base.parse::<Ipv4Addr>(), bits.parse::<u32>()) else { return false };
    if bits > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(base) & mask == u32::from(ip) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_addresses_inside_the_block_only() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(cidr_contains("10.20.0.0/16", ip("10.20.255.7")));
        assert!(!cidr_contains("10.20.0.0/16", ip("10.21.0.1")));
        assert!(cidr_contains("0.0.0.0/0", ip("203.0.113.9")));
        assert!(cidr_contains("10.0.0.5/32", ip("10.0.0.5")));
        assert!(!cidr_contains("10.0.0.5/32", ip("10.0.0.6")));
        assert!(!cidr_contains("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!cidr_contains("not-a-cidr", ip("10.0.0.1")));
    }
}
