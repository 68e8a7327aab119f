use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::*;

fn peer_of(addr: SocketAddr) -> Peer {
    from_addr(&SocketAddrAny::from(addr), |i| {
        (i == 2).then(|| "eth0".to_string())
    })
}

fn remote(addr: SocketAddr) -> (String, u32) {
    peer_of(addr).remote.unwrap()
}

#[test]
fn ipv4_is_dotted_with_its_port() {
    let a = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 40123));
    assert_eq!(remote(a), ("192.0.2.7".to_string(), 40123));
    assert_eq!(
        peer_of(a).source,
        Some(Source::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))))
    );
}

#[test]
fn ipv6_is_compressed_and_a_mapped_v4_client_is_plain_ipv4() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let a = SocketAddr::V6(SocketAddrV6::new(v6, 8080, 0, 0));
    assert_eq!(remote(a), ("2001:db8::1".to_string(), 8080));
    let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped();
    let a = SocketAddr::V6(SocketAddrV6::new(mapped, 9, 0, 0));
    assert_eq!(remote(a), ("127.0.0.1".to_string(), 9));
    // The same source as the client over IPv4.
    assert_eq!(
        peer_of(a).source,
        Some(Source::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    );
}

#[test]
fn a_scope_is_the_interface_name_or_its_number() {
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let named = SocketAddr::V6(SocketAddrV6::new(ll, 1, 0, 2));
    assert_eq!(remote(named).0, "fe80::1%eth0");
    let unnamed = SocketAddr::V6(SocketAddrV6::new(ll, 1, 0, 7));
    assert_eq!(remote(unnamed).0, "fe80::1%7");
    // One source whatever the scope says.
    assert_eq!(peer_of(named).source, Some(Source::Ip(IpAddr::V6(ll))));
}

#[test]
fn a_unix_address_gives_no_remote_and_no_source() {
    let unix = rustix::net::SocketAddrUnix::new("/tmp/x").unwrap();
    let p = from_addr(&SocketAddrAny::from(unix), |_| None);
    assert_eq!(
        p,
        Peer {
            remote: None,
            source: None
        }
    );
}

#[test]
fn sources_read_well_in_messages() {
    assert_eq!(
        Source::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string(),
        "127.0.0.1"
    );
    assert_eq!(Source::Uid(1000).to_string(), "uid 1000");
    assert_eq!(Source::Cid(3).to_string(), "vsock CID 3");
}

#[test]
fn peers_read_well_in_messages() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let a = SocketAddr::V6(SocketAddrV6::new(v6, 8080, 0, 0));
    assert_eq!(peer_of(a).to_string(), "[2001:db8::1]:8080");
    let a = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 40123));
    assert_eq!(peer_of(a).to_string(), "192.0.2.7:40123");
    let unix = Peer {
        remote: None,
        source: Some(Source::Uid(0)),
    };
    assert_eq!(unix.to_string(), "uid 0");
}
