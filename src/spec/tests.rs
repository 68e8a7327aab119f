use super::*;

fn parse(s: &str) -> Result<Spec, SpecError> {
    Spec::parse(OsStr::new(s))
}

fn ok(s: &str) -> Spec {
    parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn fails(s: &str, needle: &str) {
    match parse(s) {
        Ok(spec) => panic!("{s:?} should fail, got {spec:?}"),
        Err(e) => assert!(e.0.contains(needle), "{s:?}: {e} lacks {needle:?}"),
    }
}

fn inet(proto: Proto, family: Family, host: Host, port: u16) -> Addr {
    Addr::Inet {
        proto,
        family,
        host,
        port,
    }
}

fn canonical(s: &str) -> String {
    ok(s).to_string()
}

#[test]
fn tcp_empty_host_means_all_interfaces() {
    assert_eq!(
        ok("tcp::8080").addr,
        inet(Proto::Tcp, Family::Any, Host::Unspecified, 8080)
    );
}

#[test]
fn tcp_takes_an_ipv4_literal_host() {
    let a = ok("tcp:127.0.0.1:80").addr;
    assert_eq!(
        a,
        inet(Proto::Tcp, Family::Any, Host::V4(Ipv4Addr::LOCALHOST), 80)
    );
}

#[test]
fn tcp_takes_a_bracketed_ipv6_host_with_or_without_a_scope() {
    assert_eq!(
        ok("tcp:[::1]:80").addr,
        inet(
            Proto::Tcp,
            Family::Any,
            Host::V6(Ipv6Addr::LOCALHOST, None),
            80
        )
    );
    assert_eq!(
        ok("tcp6:[fe80::1%eth0]:80").addr,
        inet(
            Proto::Tcp,
            Family::V6,
            Host::V6("fe80::1".parse().unwrap(), Some("eth0".into())),
            80
        )
    );
    assert_eq!(canonical("tcp:[fe80::1%2]:80"), "tcp:[fe80::1%2]:80");
}

#[test]
fn tcp4_and_tcp6_fix_the_family() {
    assert_eq!(
        ok("tcp4::80").addr,
        inet(Proto::Tcp, Family::V4, Host::Unspecified, 80)
    );
    assert_eq!(
        ok("tcp6::80").addr,
        inet(Proto::Tcp, Family::V6, Host::Unspecified, 80)
    );
    fails("tcp4:[::1]:80", "tcp4 needs an IPv4 address");
    fails("tcp6:127.0.0.1:80", "tcp6 needs an IPv6 address");
}

#[test]
fn udp_has_the_same_families_as_tcp() {
    assert_eq!(
        ok("udp:127.0.0.1:53").addr,
        inet(Proto::Udp, Family::Any, Host::V4(Ipv4Addr::LOCALHOST), 53)
    );
    assert_eq!(
        ok("udp4::53").addr,
        inet(Proto::Udp, Family::V4, Host::Unspecified, 53)
    );
    assert_eq!(
        ok("udp6:[::1]:53").addr,
        inet(
            Proto::Udp,
            Family::V6,
            Host::V6(Ipv6Addr::LOCALHOST, None),
            53
        )
    );
    fails("udp4:[::1]:53", "udp4 needs an IPv4 address");
}

#[test]
fn localhost_is_a_keyword_not_a_lookup() {
    assert_eq!(
        ok("tcp:localhost:80").addr,
        inet(Proto::Tcp, Family::Any, Host::Localhost, 80)
    );
    assert_eq!(
        ok("localhost:80").addr,
        inet(Proto::Tcp, Family::Any, Host::Localhost, 80)
    );
    fails(
        "tcp:example.com:80",
        "hostnames other than localhost are not resolved",
    );
}

#[test]
fn port_zero_asks_for_a_free_port() {
    assert!(ok("tcp:127.0.0.1:0").wants_free_port());
    assert!(!ok("tcp:127.0.0.1:1").wants_free_port());
}

#[test]
fn ports_out_of_range_or_not_numbers_are_refused() {
    fails("tcp:127.0.0.1:65536", "out of range");
    fails("tcp:127.0.0.1:", "missing port");
    fails("tcp::", "missing port");
    fails("tcp:127.0.0.1:http", "not a number");
    fails("tcp:127.0.0.1:-1", "not a number");
    fails("99999", "out of range");
}

#[test]
fn hosts_that_are_not_literals_or_localhost_are_refused() {
    fails("tcp:[::1:80", "missing ']'");
    fails("tcp:[::1]80", "expected ':PORT'");
    fails(
        "tcp:::1:80",
        "IPv6 address '::1' must be in brackets, e.g. [::1]:80",
    );
    fails(
        "tcp::fe80::1:80",
        "IPv6 address 'fe80::1' must be in brackets, e.g. [fe80::1]:80",
    );
    fails("tcp:[1.2.3.4]:80", "not an IPv6 address");
    fails("tcp:1.2.3:80", "not an IP address");
    fails("tcp:[fe80::1%]:80", "empty interface");
    fails(
        "tcp6:[::ffff:127.0.0.1]:0",
        "tcp6 is IPv6 only, and [::ffff:127.0.0.1] is an IPv4-mapped address; use tcp4:127.0.0.1 or tcp:",
    );
    fails(
        "tcp:[::ffff:127.0.0.1]:0,v6only",
        "v6only contradicts [::ffff:127.0.0.1]",
    );
    ok("tcp:[::ffff:127.0.0.1]:0");
}

/// Found by fuzzing (fuzz/fuzz_targets/spec.rs): an interface name with
/// a backslash or a comma was printed unescaped, so its canonical form
/// parsed back to another name (or split off an option).
#[test]
fn interface_names_with_backslash_or_comma_round_trip() {
    for (arg, scope) in [
        (r"p4294=[fe8::01%\z[n::\\\\-h\0]:509", r"\z[n::\\-h\0"),
        (r"x=[fe8::01%\\z[n::\\\\-h\\0]:509", r"\z[n::\\-h\0"),
        (r"tcp:[fe80::1%a\,b]:80", "a,b"),
        (r"tcp:[fe80::1%a\\b]:80", r"a\b"),
    ] {
        let spec = ok(arg);
        assert!(
            matches!(&spec.addr, Addr::Inet { host: Host::V6(_, Some(s)), .. } if s == scope),
            "{arg}: {spec:?}"
        );
        assert_eq!(Spec::parse(&spec.to_os_string()), Ok(spec), "{arg}");
    }
    assert_eq!(
        canonical(r"tcp:[fe80::1%a\,b]:80"),
        r"tcp:[fe80::1%a\,b]:80"
    );
}

#[test]
fn bare_port_means_tcp_all_interfaces() {
    assert_eq!(ok("8080"), ok("tcp::8080"));
    assert_eq!(ok("tcp:8080").addr, ok("tcp::8080").addr);
}

#[test]
fn bare_ip_and_port_forms_mean_tcp() {
    assert_eq!(ok("1.2.3.4:80"), ok("tcp:1.2.3.4:80"));
    assert_eq!(ok("[::1]:80"), ok("tcp:[::1]:80"));
}

#[test]
fn systemfds_double_colon_spelling_is_read() {
    assert_eq!(ok("tcp::127.0.0.1:80"), ok("tcp:127.0.0.1:80"));
    assert_eq!(ok("tcp::[::1]:80"), ok("tcp:[::1]:80"));
    assert_eq!(ok("unix::/run/a.sock"), ok("unix:/run/a.sock"));
    assert_eq!(ok("udp::127.0.0.1:53"), ok("udp:127.0.0.1:53"));
}

#[test]
fn unix_paths_are_absolute_or_relative_files() {
    assert_eq!(
        ok("unix:/run/app.sock").addr,
        Addr::Unix {
            kind: UnixKind::Stream,
            path: UnixPath::File("/run/app.sock".into())
        }
    );
    assert_eq!(
        ok("unix:./rel/app.sock").addr,
        Addr::Unix {
            kind: UnixKind::Stream,
            path: UnixPath::File("./rel/app.sock".into())
        }
    );
    assert_eq!(ok("unix:rel.sock").to_string(), "unix:rel.sock");
    assert_eq!(ok("/run/app.sock"), ok("unix:/run/app.sock"));
    assert_eq!(ok("./app.sock"), ok("unix:./app.sock"));
    assert_eq!(ok("../app.sock"), ok("unix:../app.sock"));
    fails("unix:", "missing unix socket path");
    fails("unix:/run/", "ends with '/'");
    fails(&format!("unix:/{}", "a".repeat(107)), "at most 107 fit");
    ok(&format!("unix:/{}", "a".repeat(106)));
}

#[test]
fn an_at_sign_makes_an_abstract_unix_name() {
    assert_eq!(
        ok("unix:@gracewrap").addr,
        Addr::Unix {
            kind: UnixKind::Stream,
            path: UnixPath::Abstract(b"gracewrap".to_vec())
        }
    );
    assert_eq!(ok("@gracewrap"), ok("unix:@gracewrap"));
    fails("unix:@", "missing abstract socket name");
    fails(&format!("@{}", "a".repeat(108)), "at most 107 fit");
}

#[test]
fn unixgram_and_unixpacket_choose_the_socket_type() {
    assert!(matches!(
        ok("unixgram:/tmp/a").addr,
        Addr::Unix {
            kind: UnixKind::Dgram,
            ..
        }
    ));
    assert!(matches!(
        ok("unixpacket:/tmp/a").addr,
        Addr::Unix {
            kind: UnixKind::Seqpacket,
            ..
        }
    ));
    assert_eq!(ok("seqpacket:@x"), ok("unixpacket:@x"));
}

#[test]
fn a_backslash_escapes_a_comma_in_a_unix_path() {
    let s = ok("unix:/tmp/a\\,b.sock,backlog=5");
    assert_eq!(
        s.addr,
        Addr::Unix {
            kind: UnixKind::Stream,
            path: UnixPath::File("/tmp/a,b.sock".into())
        }
    );
    assert_eq!(s.opts.backlog, Some(5));
    assert_eq!(s.to_string(), "unix:/tmp/a\\,b.sock,backlog=5");
}

#[test]
fn unix_path_may_hold_non_utf8_bytes() {
    let arg = OsString::from_vec(b"unix:/tmp/\xff.sock".to_vec());
    let spec = Spec::parse(&arg).unwrap();
    assert_eq!(spec.to_os_string(), arg);
}

#[test]
fn fd_takes_a_descriptor_number() {
    assert_eq!(ok("fd:7").addr, Addr::Fd(7));
    assert_eq!(ok("fd:0").addr, Addr::Fd(0));
    fails("fd:", "not a file descriptor number");
    fails("fd:x", "not a file descriptor number");
    fails("fd:-1", "not a file descriptor number");
    fails("fd:99999999999", "out of range");
    fails("fd:3,backlog=1", "does not apply to fd:N");
}

#[test]
fn names_are_printable_ascii_without_colons() {
    let s = ok("http=tcp::8080");
    assert_eq!(s.name.as_deref(), Some("http"));
    assert_eq!(ok("admin=/run/admin.sock").name.as_deref(), Some("admin"));
    assert_eq!(ok("=8080").name.as_deref(), Some(""));
    assert_eq!(ok("with space=8080").name.as_deref(), Some("with space"));
    // '=' after ':' or '/' belongs to the address.
    assert_eq!(ok("unix:/tmp/a=b").name, None);
    assert_eq!(ok("/tmp/a=b").name, None);
    assert_eq!(ok("8080,backlog=5").name, None);
    fails(&format!("{}=8080", "n".repeat(256)), "at most 255");
    ok(&format!("{}=8080", "n".repeat(255)));
    fails("b\x01d=8080", "0x01");
    fails("caf\u{e9}=8080", "0xc3");
}

#[test]
fn options_follow_the_address_after_commas() {
    let s = ok("tcp::8080,backlog=4096,reuseport,v6only");
    assert_eq!(
        s.opts,
        Opts {
            backlog: Some(4096),
            reuseport: true,
            v6: Some(V6Mode::V6Only),
            ..Opts::default()
        }
    );
    assert_eq!(ok("8080,dualstack").opts.v6, Some(V6Mode::DualStack));
    assert!(ok("udp::53,reuseport").opts.reuseport);
    fails("tcp::80,backlog", "needs a value");
    fails("tcp::80,backlog=0", "not a number from 1");
    fails("tcp::80,backlog=2147483648", "not a number from 1");
    fails("udp::80,backlog=5", "only to listening sockets");
    fails("unix:/a,reuseport", "only to tcp and udp");
    fails("tcp4::80,v6only", "only to IPv6");
    fails("tcp:127.0.0.1:80,v6only", "only to IPv6");
    fails("tcp6::80,dualstack", "contradicts tcp6");
    fails("tcp::80,v6only,dualstack", "given twice");
    fails("tcp::80,reuseport,reuseport", "given twice");
    fails("tcp::80,reuseport=1", "takes no value");
    fails("tcp::80,,reuseport", "empty option");
    fails("tcp::80,bogus", "unknown option 'bogus'");
}

#[test]
fn inherit_takes_a_socket_name() {
    assert_eq!(ok("inherit:http").addr, Addr::Inherit("http".into()));
    assert_eq!(ok("web=inherit:http").name.as_deref(), Some("web"));
    fails("inherit:", "needs the NAME");
    fails("inherit:a:b", "must not contain ':'");
    fails("inherit:x,backlog=1", "does not apply to inherit:NAME");
}

#[test]
fn vsock_takes_a_cid_and_a_port() {
    let v = |kind, cid, port| Addr::Vsock { kind, cid, port };
    assert_eq!(ok("vsock:2:1234").addr, v(UnixKind::Stream, 2, 1234));
    assert_eq!(
        ok("vsock::1234").addr,
        v(UnixKind::Stream, VSOCK_CID_ANY, 1234)
    );
    assert_eq!(ok("vsock:any:1").addr, ok("vsock:-1:1").addr);
    assert_eq!(ok("vsock:host:1").addr, v(UnixKind::Stream, 2, 1));
    assert_eq!(ok("vsock:local:1").addr, v(UnixKind::Stream, 1, 1));
    assert_eq!(ok("vsock:hypervisor:1").addr, v(UnixKind::Stream, 0, 1));
    assert_eq!(ok("vsock-stream:3:1"), ok("vsock:3:1"));
    assert_eq!(ok("vsock-dgram:3:1").addr, v(UnixKind::Dgram, 3, 1));
    assert_eq!(ok("vsock-seqpacket:3:1,backlog=9").opts.backlog, Some(9));
    fails("vsock:3", "expected vsock:CID:PORT");
    fails("vsock:x:1", "vsock CID 'x'");
    fails("vsock:3:", "missing port");
    fails("vsock:3:4294967295", "below 4294967295");
    fails("vsock-dgram:3:1,backlog=1", "only to listening sockets");
    assert_eq!(canonical("vsock::5"), "vsock:any:5");
}

#[test]
fn bare_forms_are_reported_and_can_be_retyped() {
    let bare = |s: &str| Spec::parse_form(OsStr::new(s)).unwrap().1;
    assert!(bare("8080") && bare("/a") && bare("@a") && bare("[::1]:1") && bare("localhost:1"));
    assert!(!bare("tcp::8080") && !bare("unix:/a") && !bare("fd:3"));
    assert_eq!(ok("8080").retype(UnixKind::Dgram), Ok(ok("udp::8080")));
    assert_eq!(ok("n=/a").retype(UnixKind::Dgram), Ok(ok("n=unixgram:/a")));
    assert_eq!(
        ok("@a").retype(UnixKind::Seqpacket),
        Ok(ok("unixpacket:@a"))
    );
    assert!(ok("8080").retype(UnixKind::Seqpacket).is_err());
    assert!(ok("8080,backlog=5").retype(UnixKind::Dgram).is_err());
}

#[test]
fn production_options_are_checked_against_the_socket_type() {
    let s = ok(
        "tcp::80,freebind,rcvbuf=1M,sndbuf=64k,nodelay,keepalive,defer_accept=5,fastopen=256,bind_device=lo,mark=0x10",
    );
    let o = s.opts.more();
    assert!(o.freebind && o.nodelay && o.keepalive);
    assert_eq!((o.rcvbuf, o.sndbuf), (Some(1 << 20), Some(64 << 10)));
    assert_eq!(
        (o.defer_accept, o.fastopen, o.mark),
        (Some(5), Some(256), Some(16))
    );
    assert_eq!(o.bind_device.as_deref(), Some("lo"));
    assert_eq!(
        s.to_string(),
        "tcp::80,freebind,rcvbuf=1048576,sndbuf=65536,nodelay,keepalive,defer_accept=5,fastopen=256,bind_device=lo,mark=16"
    );
    let u = ok("unix:/run/a.sock,mode=660,owner=www-data,group=adm,mkdir");
    assert_eq!(
        (
            u.opts.more().mode,
            u.opts.more().owner.as_deref(),
            u.opts.more().group.as_deref(),
            u.opts.more().mkdir
        ),
        (Some(0o660), Some("www-data"), Some("adm"), Some(MKDIR_MODE))
    );
    assert_eq!(
        u.to_string(),
        "unix:/run/a.sock,mode=0660,owner=www-data,group=adm,mkdir"
    );
    assert_eq!(ok("unix:/a,mkdir=0700").opts.more().mkdir, Some(0o700));
    assert_eq!(ok("unixgram:/a,rcvbuf=4096").opts.more().rcvbuf, Some(4096));
    assert_eq!(ok("udp::53,freebind,mark=7").opts.more().mark, Some(7));
    fails("udp::53,nodelay", "nodelay applies only to tcp sockets");
    fails("unix:/a,keepalive", "keepalive applies only to tcp sockets");
    fails(
        "udp::53,defer_accept=1",
        "defer_accept applies only to tcp sockets",
    );
    fails(
        "unix:/a,freebind",
        "freebind applies only to tcp and udp sockets",
    );
    fails(
        "unix:@a,mode=600",
        "mode applies only to unix sockets with a path",
    );
    fails(
        "tcp::80,owner=root",
        "owner applies only to unix sockets with a path",
    );
    fails("unix:/a,mode=999", "mode '999' is not an octal mode");
    fails(
        "unix:/a,mode=4755",
        "mode '4755' is not an octal mode from 0 to 0777",
    );
    fails("unix:/a,mode", "mode needs a value");
    fails("unix:/a,owner=", "owner '' is not a user name or number");
    fails("tcp::80,rcvbuf=0", "rcvbuf '0' is not a number from 1");
    fails("tcp::80,rcvbuf=3G", "rcvbuf '3G' is not a number");
    fails(
        "tcp::80,rcvbuf=4096m",
        "is not a number from 1 to 2147483647",
    );
    fails("tcp::80,mark=-1", "mark '-1' is not a number");
    fails("tcp::80,bind_device=a/b", "not a network interface name");
    fails(
        "tcp::80,bind_device=waytoolonginterface",
        "not a network interface name",
    );
    fails("tcp::80,nodelay=1", "takes no value");
    fails("vsock::5,nodelay", "nodelay applies only to tcp sockets");
    fails("fd:3,rcvbuf=5", "does not apply to fd:N");
}

#[test]
fn unknown_types_and_malformed_specs_are_refused() {
    fails("http:80", "unknown socket type 'http'");
    fails("", "empty address");
    fails("name=", "empty address");
    fails("hello", "cannot parse 'hello'");
    fails("tcp::80\0", "NUL");
}

#[test]
fn the_canonical_form_parses_back_to_the_same_spec() {
    for s in [
        "tcp::8080",
        "web=tcp4:0.0.0.0:80,backlog=10",
        "tcp6:[::]:443,reuseport",
        "udp:[fe80::1%eth0]:5353,v6only",
        "unixgram:/run/log.sock",
        "unixpacket:@abs\\,tract",
        "fd:3",
        "x=tcp:localhost:1",
        "inherit:web",
        "vsock-seqpacket:2:80,backlog=3",
    ] {
        let spec = ok(s);
        assert_eq!(spec.to_string(), s);
        assert_eq!(Spec::parse(&spec.to_os_string()), Ok(spec));
    }
    assert_eq!(canonical("8080"), "tcp::8080");
    assert_eq!(canonical("[::1]:80"), "tcp:[::1]:80");
    assert_eq!(canonical("@x"), "unix:@x");
    assert_eq!(canonical("seqpacket:/a"), "unixpacket:/a");
}

/// Properties over generated specs and arbitrary bytes (issue 6): the
/// parser never panics, and every spec's canonical form parses back to it.
mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_host(family: Family) -> BoxedStrategy<Host> {
        let v4 = any::<[u8; 4]>().prop_map(|o| Host::V4(Ipv4Addr::from(o)));
        let v6 = (
            any::<[u8; 16]>(),
            proptest::option::of("[a-z0-9\\\\,:\\[]{1,8}"),
        )
            .prop_map(|(o, scope)| Host::V6(Ipv6Addr::from(o), scope));
        let common = prop_oneof![Just(Host::Unspecified), Just(Host::Localhost)];
        match family {
            Family::Any => prop_oneof![common, v4, v6].boxed(),
            Family::V4 => prop_oneof![common, v4].boxed(),
            Family::V6 => prop_oneof![common, v6].boxed(),
        }
    }

    fn arb_kind() -> impl Strategy<Value = UnixKind> {
        prop_oneof![
            Just(UnixKind::Stream),
            Just(UnixKind::Dgram),
            Just(UnixKind::Seqpacket)
        ]
    }

    fn arb_path_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..=UNIX_PATH_MAX)
    }

    fn arb_addr() -> impl Strategy<Value = Addr> {
        let family = prop_oneof![Just(Family::Any), Just(Family::V4), Just(Family::V6)];
        let proto = prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)];
        let inet = (proto, family)
            .prop_flat_map(|(proto, family)| {
                (Just(proto), Just(family), arb_host(family), any::<u16>())
            })
            .prop_map(|(proto, family, host, port)| Addr::Inet {
                proto,
                family,
                host,
                port,
            });
        // What the parser can produce: no file path starts with '@' (that
        // is the abstract spelling) or ends with '/'.
        let file = arb_path_bytes()
            .prop_filter("spelling of another form", |p| {
                p[0] != b'@' && !p.ends_with(b"/")
            })
            .prop_map(|p| UnixPath::File(OsString::from_vec(p)));
        let abs = arb_path_bytes().prop_map(UnixPath::Abstract);
        let unix =
            (arb_kind(), prop_oneof![file, abs]).prop_map(|(kind, path)| Addr::Unix { kind, path });
        let vsock = (arb_kind(), any::<u32>(), 0..u32::MAX)
            .prop_map(|(kind, cid, port)| Addr::Vsock { kind, cid, port });
        let fd = (0..=i32::MAX).prop_map(Addr::Fd);
        let inherit = "[ -9;-~]{1,40}".prop_map(Addr::Inherit);
        prop_oneof![inet, unix, vsock, fd, inherit]
    }

    /// Options that may go with `addr`, each independently on or off.
    fn arb_opts(addr: Addr) -> impl Strategy<Value = Opts> {
        let inet = matches!(addr, Addr::Inet { .. });
        let tcp = matches!(
            addr,
            Addr::Inet {
                proto: Proto::Tcp,
                ..
            }
        );
        let file = matches!(
            addr,
            Addr::Unix {
                path: UnixPath::File(_),
                ..
            }
        );
        let listening = addr.is_listening();
        let bound = !matches!(addr, Addr::Fd(_) | Addr::Inherit(_));
        let v6_ok = matches!(
            &addr,
            Addr::Inet {
                family: Family::V6 | Family::Any,
                host: Host::Unspecified | Host::V6(..),
                ..
            }
        );
        let v6_only_family = matches!(
            addr,
            Addr::Inet {
                family: Family::V6,
                ..
            }
        );
        let small = || proptest::option::of(1..=i32::MAX as u32);
        let name = || proptest::option::of("[a-z_][a-z0-9_-]{0,10}|[0-9]{1,5}");
        (
            (
                small(),
                any::<bool>(),
                proptest::option::of(any::<bool>()),
                any::<bool>(),
                small(),
                small(),
            ),
            (
                any::<bool>(),
                any::<bool>(),
                small(),
                small(),
                proptest::option::of("[a-z][a-z0-9.]{0,14}"),
                proptest::option::of(any::<u32>()),
            ),
            (
                proptest::option::of(0..=0o777u32),
                name(),
                name(),
                proptest::option::of(0..=0o777u32),
            ),
        )
            .prop_map(
                move |(
                    (backlog, reuseport, v6, freebind, rcvbuf, sndbuf),
                    (nodelay, keepalive, defer, fastopen, dev, mark),
                    (mode, owner, group, mkdir),
                )| {
                    let v6 = v6.filter(|_| v6_ok).map(|only| {
                        if only {
                            V6Mode::V6Only
                        } else {
                            V6Mode::DualStack
                        }
                    });
                    let more = More {
                        freebind: freebind && inet,
                        rcvbuf: rcvbuf.filter(|_| bound),
                        sndbuf: sndbuf.filter(|_| bound),
                        nodelay: nodelay && tcp,
                        keepalive: keepalive && tcp,
                        defer_accept: defer.filter(|_| tcp),
                        fastopen: fastopen.filter(|_| tcp),
                        bind_device: dev.filter(|_| inet),
                        mark: mark.filter(|_| inet),
                        mode: mode.filter(|_| file),
                        owner: owner.filter(|_| file),
                        group: group.filter(|_| file),
                        mkdir: mkdir.filter(|_| file),
                    };
                    Opts {
                        backlog: backlog.filter(|_| listening),
                        reuseport: reuseport && inet,
                        v6: v6.filter(|m| !(v6_only_family && *m == V6Mode::DualStack)),
                        // What the parser makes: nothing out of line when
                        // nothing is set.
                        more: (more != More::NONE).then(|| Box::new(more)),
                    }
                },
            )
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        let name = proptest::option::of("[ -+\\-.0-9;<>-~]{0,30}");
        (name, arb_addr())
            .prop_flat_map(|(name, addr)| (Just(name), Just(addr.clone()), arb_opts(addr)))
            .prop_map(|(name, addr, opts)| Spec { name, addr, opts })
    }

    /// Bytes that look like specs often enough to reach deep into the parser.
    fn arb_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"tcp:".to_vec()),
            Just(b"tcp6:".to_vec()),
            Just(b"udp4:".to_vec()),
            Just(b"unix:".to_vec()),
            Just(b"unixgram:".to_vec()),
            Just(b"vsock:".to_vec()),
            Just(b"fd:".to_vec()),
            Just(b"inherit:".to_vec()),
            Just(b"[::1]".to_vec()),
            Just(b"[fe80::1%eth0]".to_vec()),
            Just(b"127.0.0.1".to_vec()),
            Just(b"localhost".to_vec()),
            Just(b":".to_vec()),
            Just(b"::".to_vec()),
            Just(b",".to_vec()),
            Just(b"=".to_vec()),
            Just(b"\\,".to_vec()),
            Just(b"\\\\".to_vec()),
            Just(b"@".to_vec()),
            Just(b"/".to_vec()),
            Just(b"./".to_vec()),
            Just(b"8080".to_vec()),
            Just(b"0".to_vec()),
            Just(b"65536".to_vec()),
            Just(b"backlog=".to_vec()),
            Just(b"reuseport".to_vec()),
            Just(b"v6only".to_vec()),
            Just(b"dualstack".to_vec()),
            Just(b"any".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_spec_round_trips_through_its_canonical_form(spec in arb_spec()) {
            let text = spec.to_os_string();
            prop_assert_eq!(Spec::parse(&text), Ok(spec), "canonical form {:?}", text);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_parsed_ones_round_trip(bytes in arb_text()) {
            if let Ok(spec) = Spec::parse(OsStr::from_bytes(&bytes)) {
                let text = spec.to_os_string();
                prop_assert_eq!(Spec::parse(&text), Ok(spec), "from {:?} via {:?}", bytes.escape_ascii().to_string(), text);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Spec::parse_form(OsStr::from_bytes(&bytes));
        }
    }
}
