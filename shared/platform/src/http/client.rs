//! The client's address, for the limits kept per address (failed authentications,
//! the public lookup's rate). It is the TCP peer, unless the deployment names a
//! header its reverse proxy sets (`client_ip_header`) and the peer is one of its
//! proxies (`trusted_proxies`): anyone else could write that header, so it is read
//! from nobody else. [`serve`](super::serve) puts the result in every request's
//! extensions as a [`ClientAddr`].

use axum::http::HeaderMap;
use std::net::{IpAddr, Ipv6Addr};

/// The address a request came from, as resolved by [`ProxyTrust::client_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The key limits count by: the address itself, or an IPv6 address's /64 (one
    /// subscriber usually holds a whole /64, and would otherwise have 2^64 addresses
    /// to spread its requests over). An IPv4 address mapped into IPv6 is the IPv4 one.
    pub fn key(&self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }
}

/// A network, `10.0.0.0/8` or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ClientAddr(ip).key_exact();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl ClientAddr {
    /// The address, an IPv4-mapped IPv6 one as IPv4.
    fn key_exact(&self) -> IpAddr {
        match self.0 {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(self.0, IpAddr::V4),
            v4 => v4,
        }
    }
}

/// Which header, set by which proxies, tells the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTrust {
    header: Option<String>,
    proxies: Vec<Cidr>,
}

/// Why a proxy setting is unusable.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an IP address or network (`10.0.0.0/8`)")]
pub struct BadNetwork(pub String);

impl ProxyTrust {
    /// Trusts `header` (`x-forwarded-for`, `x-real-ip`) from the peers in `proxies`.
    /// Without a header, or with no proxies, the peer is always the client.
    pub fn new(header: Option<&str>, proxies: &[String]) -> Result<Self, BadNetwork> {
        let proxies = proxies
            .iter()
            .map(|p| Cidr::parse(p).ok_or_else(|| BadNetwork(p.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            header: header
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
            proxies,
        })
    }

    /// The client of a request from `peer` with `headers`: the header's last entry
    /// (the one our proxy appended: entries before it are the client's own claims)
    /// when the peer is a trusted proxy and the entry is an address, else the peer.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let Some(name) = &self.header else {
            return ClientAddr(peer);
        };
        if !self.proxies.iter().any(|p| p.contains(peer)) {
            return ClientAddr(peer);
        }
        let last = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty());
        let parsed = last.and_then(|v| {
            v.parse::<IpAddr>()
                .ok()
                .or_else(|| v.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        });
        ClientAddr(parsed.unwrap_or(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_proxy_header_is_read_only_from_a_trusted_proxy() {
        let trust = ProxyTrust::new(Some("X-Forwarded-For"), &["10.0.0.0/8".into()]).unwrap();
        let h = with("x-forwarded-for", &["1.1.1.1, 203.0.113.7"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(trust.client_of(proxy, &h).0.to_string(), "203.0.113.7");
        assert_eq!(
            trust.client_of(stranger, &h).0,
            stranger,
            "anyone can write it"
        );
        let two_lines = with("x-forwarded-for", &["1.1.1.1", "203.0.113.8"]);
        assert_eq!(
            trust.client_of(proxy, &two_lines).0.to_string(),
            "203.0.113.8"
        );
        let garbage = with("x-forwarded-for", &["not-an-ip"]);
        assert_eq!(trust.client_of(proxy, &garbage).0, proxy);
    }

    #[test]
    fn without_a_configured_header_the_peer_is_the_client() {
        let trust = ProxyTrust::new(None, &["0.0.0.0/0".into()]).unwrap();
        let h = with("x-forwarded-for", &["203.0.113.7"]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(trust.client_of(peer, &h).0, peer);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_bit_prefix() {
        let a = ClientAddr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a.key(), b.key());
        let mapped = ClientAddr("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped.key().to_string(), "192.0.2.1");
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.4.5".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("ten").is_none());
    }
}
