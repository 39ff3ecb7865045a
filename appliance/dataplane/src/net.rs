//! The director's own network: its address on each port, the routes, and the firewall-mark classifier.
//! Immutable once built; every worker holds a shared reference.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_wire::ethernet::MacAddr;

/// One port's layer-3 identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// IP MTU in bytes.
    pub mtu: u16,
    /// Its IPv6 address and prefix length, if it has one.
    pub addr6: Option<(Ipv6Addr, u8)>,
}

impl Interface {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        same_prefix(self.addr, ip, self.prefix_len)
    }

    pub fn contains6(&self, ip: &Ipv6Addr) -> bool {
        self.addr6.is_some_and(|(a, len)| same_prefix6(&a, ip, len))
    }

    /// Whether `ip` is on this interface's subnet of its family.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.contains(a),
            IpAddr::V6(a) => self.contains6(&a),
        }
    }
}

/// A static route: `prefix/len` via `gateway` (which must be on a connected subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// Marks packets as iptables' mangle table does for LVS firewall-mark services: a packet to
/// `destination/prefix_len` with this protocol and a destination port in `ports` (all ports if empty)
/// carries `mark`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierRule {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub protocol: u8,
    pub ports: Vec<u16>,
    pub mark: u32,
}

/// [`ClassifierRule`] for IPv6 destinations (ip6tables' mangle table), for `-6` firewall-mark
/// services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierRule6 {
    pub destination: Ipv6Addr,
    pub prefix_len: u8,
    pub protocol: u8,
    pub ports: Vec<u16>,
    pub mark: u32,
}

/// Where a packet leaves: the port and the neighbour to hand it to.
/// An IPv6 static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub port: usize,
    /// The neighbour the frame goes to: the destination itself on a connected subnet, else the
    /// route's gateway (of the destination's family).
    pub addr: IpAddr,
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

pub fn same_prefix(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    (u32::from(a) ^ u32::from(b)) & mask(len) == 0
}

pub fn same_prefix6(a: &Ipv6Addr, b: &Ipv6Addr, len: u8) -> bool {
    let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
    (u128::from(*a) ^ u128::from(*b)) & m == 0
}

/// Why a network description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("gateway {gateway} of route {prefix}/{len} is on no port's subnet")]
    GatewayUnreachable { prefix: Ipv4Addr, len: u8, gateway: Ipv4Addr },
    #[error("gateway {gateway} of route {prefix}/{len} is on no port's IPv6 subnet")]
    GatewayUnreachable6 { prefix: Ipv6Addr, len: u8, gateway: Ipv6Addr },
    #[error("prefix length {0} is over the address's length")]
    PrefixLen(u8),
}

/// The director's addresses, routes and classifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Indexed like the ports.
    pub interfaces: Vec<Interface>,
    /// Most specific first, each with the port its gateway is on.
    routes: Vec<(Route, usize)>,
    routes6: Vec<(Route6, NextHop)>,
    pub classifier: Vec<ClassifierRule>,
    pub classifier6: Vec<ClassifierRule6>,
}

impl Network {
    pub fn new(
        interfaces: Vec<Interface>,
        routes: &[Route],
        classifier: Vec<ClassifierRule>,
    ) -> Result<Self, NetError> {
        let mut resolved = Vec::with_capacity(routes.len());
        for r in routes {
            if r.prefix_len > 32 {
                return Err(NetError::PrefixLen(r.prefix_len));
            }
            let port = interfaces.iter().position(|i| i.contains(r.gateway)).ok_or(
                NetError::GatewayUnreachable { prefix: r.prefix, len: r.prefix_len, gateway: r.gateway },
            )?;
            resolved.push((*r, port));
        }
        resolved.sort_by_key(|r| std::cmp::Reverse(r.0.prefix_len));
        Ok(Self { interfaces, routes: resolved, routes6: Vec::new(), classifier, classifier6: Vec::new() })
    }

    /// The classifier's host destinations (/32, or /128 for IPv6): the VIPs of firewall-mark
    /// services of that family.
    pub fn classifier_hosts(&self, v6: bool) -> Vec<IpAddr> {
        if v6 {
            self.classifier6.iter().filter(|r| r.prefix_len == 128).map(|r| r.destination.into()).collect()
        } else {
            self.classifier.iter().filter(|r| r.prefix_len == 32).map(|r| r.destination.into()).collect()
        }
    }

    /// Adds IPv6 classifier rules.
    pub fn with_classifier6(mut self, rules: Vec<ClassifierRule6>) -> Self {
        self.classifier6 = rules;
        self
    }

    /// The mark of an IPv6 packet to `dst`, as [`Network::classify`].
    pub fn classify6(&self, dst: &Ipv6Addr, protocol: u8, dport: u16) -> Option<u32> {
        self.classifier6
            .iter()
            .find(|r| {
                r.protocol == protocol
                    && same_prefix6(&r.destination, dst, r.prefix_len)
                    && (r.ports.is_empty() || r.ports.contains(&dport))
            })
            .map(|r| r.mark)
    }

    /// Adds IPv6 static routes; each gateway must be on an interface's IPv6 subnet.
    pub fn with_routes6(mut self, routes: &[Route6]) -> Result<Self, NetError> {
        for r in routes {
            if r.prefix_len > 128 {
                return Err(NetError::PrefixLen(r.prefix_len));
            }
            let port = self.interfaces.iter().position(|i| i.contains6(&r.gateway)).ok_or(
                NetError::GatewayUnreachable6 { prefix: r.prefix, len: r.prefix_len, gateway: r.gateway },
            )?;
            self.routes6.push((*r, NextHop { port, addr: r.gateway.into() }));
        }
        self.routes6.sort_by_key(|r| std::cmp::Reverse(r.0.prefix_len));
        Ok(self)
    }

    /// The next hop towards `dst`, of its family.
    #[inline]
    pub fn route_ip(&self, dst: IpAddr) -> Option<NextHop> {
        match dst {
            IpAddr::V4(a) => self.route(a),
            IpAddr::V6(a) => self.route6(&a),
        }
    }

    /// Connected subnets first (the longest prefix), then the longest static route.
    pub fn route6(&self, dst: &Ipv6Addr) -> Option<NextHop> {
        let connected = self
            .interfaces
            .iter()
            .enumerate()
            .filter_map(|(port, i)| {
                i.addr6.filter(|(a, len)| same_prefix6(a, dst, *len)).map(|(_, len)| (port, len))
            })
            .max_by_key(|&(_, len)| len);
        let stat = self.routes6.iter().find(|(r, _)| same_prefix6(&r.prefix, dst, r.prefix_len));
        match (connected, stat) {
            (Some((port, cl)), Some((r, _))) if cl >= r.prefix_len => {
                Some(NextHop { port, addr: (*dst).into() })
            }
            (_, Some((_, nh))) => Some(*nh),
            (Some((port, _)), None) => Some(NextHop { port, addr: (*dst).into() }),
            (None, None) => None,
        }
    }

    /// The interface whose IPv6 address `ip` is.
    pub fn local_port6(&self, ip: &Ipv6Addr) -> Option<usize> {
        self.interfaces.iter().position(|i| i.addr6.is_some_and(|(a, _)| a == *ip))
    }

    /// Longest-prefix match: a connected subnet (the destination itself is the next hop), else the
    /// most specific static route. Connected subnets win over routes of the same length, as in Linux.
    #[inline]
    pub fn route(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.route4(dst).map(|(port, addr)| NextHop { port, addr: addr.into() })
    }

    /// [`Network::route`] as (port, IPv4 next hop): plain scalars the packet path keeps in
    /// registers (a `NextHop`, with its `IpAddr`, went through memory with a store-forwarding
    /// stall on every packet).
    #[inline]
    pub fn route4(&self, dst: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        let connected = self
            .interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| i.contains(dst))
            .max_by_key(|(_, i)| i.prefix_len)
            .map(|(port, i)| (i.prefix_len, port));
        let stat = self.routes.iter().find(|(r, _)| same_prefix(r.prefix, dst, r.prefix_len));
        match (connected, stat) {
            (Some((cl, port)), Some((r, _))) if cl >= r.prefix_len => Some((port, dst)),
            (_, Some((r, port))) => Some((*port, r.gateway)),
            (Some((_, port)), None) => Some((port, dst)),
            (None, None) => None,
        }
    }

    /// The port whose address `ip` is.
    pub fn local_port(&self, ip: Ipv4Addr) -> Option<usize> {
        self.interfaces.iter().position(|i| i.addr == ip)
    }

    /// The firewall mark of a packet, if a rule matches (first match wins, like an iptables chain).
    pub fn classify(&self, dst: Ipv4Addr, protocol: u8, dport: u16) -> Option<u32> {
        self.classifier
            .iter()
            .find(|r| {
                r.protocol == protocol
                    && same_prefix(r.destination, dst, r.prefix_len)
                    && (r.ports.is_empty() || r.ports.contains(&dport))
            })
            .map(|r| r.mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(addr: [u8; 4], len: u8) -> Interface {
        Interface {
            name: "p".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addr: addr.into(),
            prefix_len: len,
            mtu: 1500,
            addr6: None,
        }
    }

    #[test]
    fn connected_beats_default_and_specific_routes_win() {
        let net = Network::new(
            vec![iface([192, 0, 2, 2], 24), iface([203, 0, 113, 1], 24)],
            &[
                Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: [192, 0, 2, 1].into() },
                Route {
                    prefix: [198, 51, 100, 0].into(),
                    prefix_len: 25,
                    gateway: [203, 0, 113, 254].into(),
                },
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(
            net.route([203, 0, 113, 7].into()),
            Some(NextHop { port: 1, addr: [203, 0, 113, 7].into() })
        );
        assert_eq!(net.route([8, 8, 8, 8].into()), Some(NextHop { port: 0, addr: [192, 0, 2, 1].into() }));
        assert_eq!(
            net.route([198, 51, 100, 9].into()),
            Some(NextHop { port: 1, addr: [203, 0, 113, 254].into() })
        );
        assert_eq!(net.route([198, 51, 100, 200].into()).map(|n| n.port), Some(0));
        assert_eq!(net.local_port([203, 0, 113, 1].into()), Some(1));
    }

    #[test]
    fn no_default_route_means_no_route_and_gateways_must_be_connected() {
        let net = Network::new(vec![iface([192, 0, 2, 2], 24)], &[], vec![]).unwrap();
        assert_eq!(net.route([8, 8, 8, 8].into()), None);
        let e = Network::new(
            vec![iface([192, 0, 2, 2], 24)],
            &[Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: [10, 0, 0, 1].into() }],
            vec![],
        );
        assert!(matches!(e, Err(NetError::GatewayUnreachable { .. })));
    }

    #[test]
    fn classifier_matches_destination_protocol_and_port_set() {
        let rule = ClassifierRule {
            destination: [192, 0, 2, 90].into(),
            prefix_len: 32,
            protocol: 6,
            ports: vec![80, 443],
            mark: 7,
        };
        let net = Network::new(vec![], &[], vec![rule]).unwrap();
        assert_eq!(net.classify([192, 0, 2, 90].into(), 6, 443), Some(7));
        assert_eq!(net.classify([192, 0, 2, 90].into(), 6, 22), None);
        assert_eq!(net.classify([192, 0, 2, 90].into(), 17, 80), None);
        assert_eq!(net.classify([192, 0, 2, 91].into(), 6, 80), None);
    }
}
