//! Destination policy: where a webhook may be sent.
//!
//! Webhook URLs come from buyers, that is, from outside. A seller that POSTs wherever a buyer
//! says can be made to attack its own network (cloud metadata at 169.254.169.254, admin ports on
//! 10.x, localhost). The policy refuses such destinations **at connect time, on the addresses
//! actually connected to**: [`PolicyResolver`] resolves a host, drops every forbidden address,
//! and hands the HTTP client only what passed. DNS rebinding between a check and the connect is
//! therefore impossible, and connections stay pooled per origin (a pooled connection was checked
//! when it was opened).
//!
//! Users who bring their own HTTP client take responsibility for egress.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::signing::{CanonicalUrl, Scheme};

#[cfg(feature = "send")]
mod resolver;
#[cfg(feature = "send")]
pub use resolver::{HostResolver, PolicyResolver, ResolveFuture, SystemResolver};

/// A range of addresses the policy refuses unless private destinations are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForbiddenRange {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud metadata services: 169.254.169.254, 169.254.170.2, fd00:ec2::254, 100.100.100.200.
    CloudMetadata,
    /// 100.64/10 carrier-grade NAT.
    SharedAddressSpace,
    /// fc00::/7 unique local.
    UniqueLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15 benchmarking, 192.0.0/24 protocol assignments, 240/4 reserved, 64:ff9b:1::/48, 100::/64 discard.
    Reserved,
    /// An address the operator denied explicitly.
    Denied,
}

impl fmt::Display for ForbiddenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::Private => "private (RFC 1918)",
            Self::LinkLocal => "link-local",
            Self::CloudMetadata => "cloud metadata service",
            Self::SharedAddressSpace => "carrier-grade NAT (100.64.0.0/10)",
            Self::UniqueLocal => "IPv6 unique local (fc00::/7)",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation range",
            Self::Reserved => "reserved range",
            Self::Denied => "explicitly denied",
        })
    }
}

/// Which forbidden range `ip` falls in, if any. IPv4-mapped and IPv4-compatible IPv6 forms
/// (`::ffff:127.0.0.1`) and NAT64 (`64:ff9b::/96`) are judged by the IPv4 address inside.
pub fn classify(ip: IpAddr) -> Option<ForbiddenRange> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<ForbiddenRange> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] | [169, 254, 170, 2] | [100, 100, 100, 200] => {
            ForbiddenRange::CloudMetadata
        }
        [127, ..] => ForbiddenRange::Loopback,
        [10, ..] | [192, 168, ..] => ForbiddenRange::Private,
        [172, b, ..] if (16..=31).contains(&b) => ForbiddenRange::Private,
        [169, 254, ..] => ForbiddenRange::LinkLocal,
        [100, b, ..] if (64..=127).contains(&b) => ForbiddenRange::SharedAddressSpace,
        [0, ..] => ForbiddenRange::Unspecified,
        [255, 255, 255, 255] => ForbiddenRange::Broadcast,
        [224..=239, ..] => ForbiddenRange::Multicast,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => ForbiddenRange::Documentation,
        [198, 18 | 19, ..] | [192, 0, 0, _] | [240..=255, ..] => ForbiddenRange::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<ForbiddenRange> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // IPv4-compatible (deprecated ::a.b.c.d) and NAT64 well-known prefix: judge the embedded IPv4.
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
        .or(Some(ForbiddenRange::Reserved));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    Some(match s {
        _ if ip.is_unspecified() => ForbiddenRange::Unspecified,
        _ if ip.is_loopback() => ForbiddenRange::Loopback,
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => ForbiddenRange::CloudMetadata,
        [a, ..] if a & 0xfe00 == 0xfc00 => ForbiddenRange::UniqueLocal,
        [a, ..] if a & 0xffc0 == 0xfe80 => ForbiddenRange::LinkLocal,
        [a, ..] if a & 0xffc0 == 0xfec0 => ForbiddenRange::LinkLocal, // deprecated site-local
        [a, ..] if a & 0xff00 == 0xff00 => ForbiddenRange::Multicast,
        [0x2001, 0x0db8, ..] | [0x3fff, ..] => ForbiddenRange::Documentation,
        [0x0064, 0xff9b, 0x0001, ..] | [0x0100, 0, 0, 0, ..] | [0x2001, 0x0002, 0, ..] => {
            ForbiddenRange::Reserved
        }
        _ => return None,
    })
}

/// A destination the policy refused; nothing was signed or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// Plain http while the policy requires https.
    #[error(
        "refused destination {url}: plain http is not allowed; use https (or allow http for local testing)"
    )]
    HttpNotAllowed {
        /// The URL.
        url: String,
    },
    /// A port outside the allow-list.
    #[error("refused destination {url}: port {port} is not in the allowed ports {allowed:?}")]
    PortNotAllowed {
        /// The URL.
        url: String,
        /// The port.
        port: u16,
        /// The allow-list.
        allowed: Vec<u16>,
    },
    /// An address in a forbidden range.
    #[error(
        "refused destination {host}: address {ip} is {range}; allow private destinations only for trusted, local setups"
    )]
    ForbiddenAddress {
        /// The host as written.
        host: String,
        /// The address.
        ip: IpAddr,
        /// The rule that refused it.
        range: ForbiddenRange,
    },
    /// Name resolution failed.
    #[error("could not resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// The name resolved to no address at all.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The host.
        host: String,
    },
}

/// Where webhooks may go. The default is strict: https only, port 443, public addresses only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    allow_http: bool,
    allow_private: bool,
    ports: Option<Vec<u16>>,
    deny: Vec<IpAddr>,
    allow: Vec<IpAddr>,
}

impl Default for DestinationPolicy {
    fn default() -> Self {
        Self::strict()
    }
}

impl DestinationPolicy {
    /// https only, port 443, public addresses only.
    pub fn strict() -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            ports: None,
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }

    /// Anything goes except explicit denials: for loopback tests and trusted networks.
    pub fn permissive() -> Self {
        Self {
            allow_http: true,
            allow_private: true,
            ports: Some(Vec::new()),
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }

    /// Allow plain `http` (and port 80).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Allow loopback, private, link-local and the other non-public ranges.
    pub fn allow_private_destinations(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Allow exactly these ports; an empty list allows every port. Default: 443, plus 80 when
    /// http is allowed.
    pub fn allowed_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = Some(ports.into_iter().collect());
        self
    }

    /// Always refuse this address, whatever else is allowed.
    pub fn deny_address(mut self, ip: IpAddr) -> Self {
        self.deny.push(ip);
        self
    }

    /// Allow this one address even though its range is forbidden (e.g. one internal receiver).
    pub fn allow_address(mut self, ip: IpAddr) -> Self {
        self.allow.push(ip);
        self
    }

    /// Whether plain http is allowed.
    pub fn http_allowed(&self) -> bool {
        self.allow_http
    }

    fn port_allowed(&self, port: u16) -> bool {
        match &self.ports {
            Some(list) if list.is_empty() => true,
            Some(list) => list.contains(&port),
            None => port == 443 || (self.allow_http && port == 80),
        }
    }

    fn allowed_port_list(&self) -> Vec<u16> {
        match &self.ports {
            Some(list) => list.clone(),
            None if self.allow_http => vec![443, 80],
            None => vec![443],
        }
    }

    /// Check one address.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), DestinationError> {
        let ip = canonical_ip(ip);
        let refuse = |range| {
            Err(DestinationError::ForbiddenAddress {
                host: host.to_owned(),
                ip,
                range,
            })
        };
        if self.deny.iter().any(|d| canonical_ip(*d) == ip) {
            return refuse(ForbiddenRange::Denied);
        }
        if self.allow_private || self.allow.iter().any(|a| canonical_ip(*a) == ip) {
            return Ok(());
        }
        match classify(ip) {
            Some(range) => refuse(range),
            None => Ok(()),
        }
    }

    /// Check what can be checked without resolving: scheme, port, and an IP-literal host.
    pub fn check_url(&self, url: &CanonicalUrl) -> Result<(), DestinationError> {
        if url.scheme == Scheme::Http && !self.allow_http {
            return Err(DestinationError::HttpNotAllowed {
                url: url.target_uri.clone(),
            });
        }
        if !self.port_allowed(url.port) {
            return Err(DestinationError::PortNotAllowed {
                url: url.target_uri.clone(),
                port: url.port,
                allowed: self.allowed_port_list(),
            });
        }
        if let Some(ip) = literal_ip(&url.host) {
            self.check_ip(&url.host, ip)?;
        }
        Ok(())
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address of an IP-literal host (`[::1]` or `127.0.0.1`); `None` for names.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_table() {
        let table = [
            ("127.0.0.1", Some(ForbiddenRange::Loopback)),
            ("127.255.0.9", Some(ForbiddenRange::Loopback)),
            ("10.1.2.3", Some(ForbiddenRange::Private)),
            ("172.16.0.1", Some(ForbiddenRange::Private)),
            ("172.31.255.255", Some(ForbiddenRange::Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(ForbiddenRange::Private)),
            ("169.254.169.254", Some(ForbiddenRange::CloudMetadata)),
            ("169.254.1.1", Some(ForbiddenRange::LinkLocal)),
            ("100.64.0.1", Some(ForbiddenRange::SharedAddressSpace)),
            ("100.128.0.1", None),
            ("0.0.0.0", Some(ForbiddenRange::Unspecified)),
            ("255.255.255.255", Some(ForbiddenRange::Broadcast)),
            ("224.0.0.1", Some(ForbiddenRange::Multicast)),
            ("192.0.2.5", Some(ForbiddenRange::Documentation)),
            ("198.51.100.5", Some(ForbiddenRange::Documentation)),
            ("203.0.113.5", Some(ForbiddenRange::Documentation)),
            ("198.18.0.1", Some(ForbiddenRange::Reserved)),
            ("240.0.0.1", Some(ForbiddenRange::Reserved)),
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("::1", Some(ForbiddenRange::Loopback)),
            ("::", Some(ForbiddenRange::Unspecified)),
            ("fe80::1", Some(ForbiddenRange::LinkLocal)),
            ("fc00::1", Some(ForbiddenRange::UniqueLocal)),
            ("fd12:3456::1", Some(ForbiddenRange::UniqueLocal)),
            ("ff02::1", Some(ForbiddenRange::Multicast)),
            ("2001:db8::1", Some(ForbiddenRange::Documentation)),
            ("fd00:ec2::254", Some(ForbiddenRange::CloudMetadata)),
            ("::ffff:127.0.0.1", Some(ForbiddenRange::Loopback)),
            ("::ffff:10.0.0.1", Some(ForbiddenRange::Private)),
            (
                "::ffff:169.254.169.254",
                Some(ForbiddenRange::CloudMetadata),
            ),
            ("::127.0.0.1", Some(ForbiddenRange::Loopback)),
            ("64:ff9b::10.0.0.1", Some(ForbiddenRange::Private)),
            ("64:ff9b::8.8.8.8", None),
            ("2606:4700::1111", None),
        ];
        for (addr, want) in table {
            assert_eq!(classify(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn policy_layers() {
        let strict = DestinationPolicy::strict();
        assert!(strict.check_ip("h", ip("8.8.8.8")).is_ok());
        assert!(matches!(
            strict.check_ip("h", ip("127.0.0.1")),
            Err(DestinationError::ForbiddenAddress {
                range: ForbiddenRange::Loopback,
                ..
            })
        ));
        let open = DestinationPolicy::strict()
            .allow_private_destinations(true)
            .deny_address(ip("127.0.0.2"));
        assert!(open.check_ip("h", ip("127.0.0.1")).is_ok());
        assert!(matches!(
            open.check_ip("h", ip("::ffff:127.0.0.2")),
            Err(DestinationError::ForbiddenAddress {
                range: ForbiddenRange::Denied,
                ..
            })
        ));
        let one = DestinationPolicy::strict().allow_address(ip("10.0.0.7"));
        assert!(one.check_ip("h", ip("10.0.0.7")).is_ok());
        assert!(one.check_ip("h", ip("10.0.0.8")).is_err());
    }

    #[test]
    fn url_checks() {
        let c = |u| crate::signing::canonicalize_url(u).unwrap();
        let strict = DestinationPolicy::strict();
        assert!(strict.check_url(&c("https://buyer.example/x")).is_ok());
        assert!(matches!(
            strict.check_url(&c("http://buyer.example/x")),
            Err(DestinationError::HttpNotAllowed { .. })
        ));
        assert!(matches!(
            strict.check_url(&c("https://buyer.example:8443/x")),
            Err(DestinationError::PortNotAllowed { port: 8443, .. })
        ));
        assert!(matches!(
            strict.check_url(&c("https://[::1]/x")),
            Err(DestinationError::ForbiddenAddress { .. })
        ));
        assert!(matches!(
            strict.check_url(&c("https://169.254.169.254/")),
            Err(DestinationError::ForbiddenAddress { .. })
        ));
        let http = DestinationPolicy::strict().allow_http(true);
        assert!(http.check_url(&c("http://buyer.example/x")).is_ok());
        assert!(http.check_url(&c("http://buyer.example:8080/x")).is_err());
    }
}
