use std::cell::Cell;

use super::*;

/// A process as [`read`] sees it: fds `FIRST_FD..open_below` are open
/// except `holes`; counts the fd checks.
#[derive(Debug, Clone)]
struct Model {
    pid: u32,
    parent: u32,
    pidfd_id: Option<u64>,
    open_below: RawFd,
    holes: Vec<RawFd>,
    checks: Cell<usize>,
}

impl Model {
    fn new(open: RawFd) -> Model {
        Model {
            pid: 4242,
            parent: 4241,
            pidfd_id: None,
            open_below: FIRST_FD + open,
            holes: Vec::new(),
            checks: Cell::new(0),
        }
    }
}

impl Reader for Model {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn parent(&self) -> u32 {
        self.parent
    }

    fn pidfd_id(&self) -> Option<u64> {
        self.pidfd_id
    }

    fn is_open(&self, fd: RawFd) -> bool {
        self.checks.set(self.checks.get() + 1);
        (0..self.open_below).contains(&fd) && !self.holes.contains(&fd)
    }
}

fn vars<'a>(pairs: &[(&str, &'a str)]) -> Vars<'a> {
    let mut v = Vars::default();
    for &(key, value) in pairs {
        let slot = match key {
            "LISTEN_PID" => &mut v.pid,
            "LISTEN_PIDFDID" => &mut v.pidfd_id,
            "LISTEN_FDS" => &mut v.fds,
            "LISTEN_FDNAMES" => &mut v.names,
            "GRACEWRAP_HANDOFF" => &mut v.handoff,
            _ => panic!("{key}"),
        };
        *slot = Some(value.as_bytes());
    }
    v
}

fn fds(names: &[&str], parent: Option<u32>) -> Result<Listen, Error> {
    Ok(Listen::Fds {
        names: names.iter().map(|n| n.to_string()).collect(),
        parent,
    })
}

fn error(message: &str) -> Result<Listen, Error> {
    Err(Error(message.into()))
}

#[test]
fn the_table_of_inherit_rs() {
    let me = Model::new(2);
    let read = |pairs: &[(&str, &str)]| read(&vars(pairs), &me);
    assert_eq!(read(&[("LISTEN_FDS", "2")]), Ok(Listen::Nothing));
    assert_eq!(
        read(&[("LISTEN_PID", "x"), ("LISTEN_FDS", "2")]),
        error("LISTEN_PID=x is not a process id")
    );
    assert_eq!(
        read(&[("LISTEN_PID", "7"), ("LISTEN_FDS", "2")]),
        Ok(Listen::Ignored(
            "LISTEN_PID=7 is not gracewrap's pid (4242)".into()
        ))
    );
    assert_eq!(read(&[("LISTEN_PID", "4242")]), Ok(Listen::Nothing));
    assert_eq!(
        read(&[("LISTEN_PID", "4242"), ("LISTEN_FDS", "2")]),
        fds(&["unknown", "unknown"], None)
    );
    assert_eq!(
        read(&[("LISTEN_PID", "4242"), ("LISTEN_FDS", "3")]),
        error("LISTEN_FDS=3 but fd 5 is not open")
    );
    assert_eq!(
        read(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "a")
        ]),
        error("LISTEN_FDNAMES has 1 names for LISTEN_FDS=2 fds (libsystemd refuses this too)")
    );
    assert_eq!(
        read(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "a:b\u{e9}")
        ]),
        error("LISTEN_FDNAMES: name contains the byte 0xc3; only printable ASCII is allowed")
    );
    assert_eq!(
        read(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "a:")
        ]),
        fds(&["a", ""], None)
    );
}

#[test]
fn a_pidfd_id_decides_only_where_the_kernel_has_one() {
    let mut me = Model::new(1);
    let v = vars(&[
        ("LISTEN_PID", "4242"),
        ("LISTEN_PIDFDID", "99"),
        ("LISTEN_FDS", "1"),
    ]);
    assert_eq!(read(&v, &me), fds(&["unknown"], None));
    me.pidfd_id = Some(99);
    assert_eq!(read(&v, &me), fds(&["unknown"], None));
    me.pidfd_id = Some(100);
    assert_eq!(
        read(&v, &me),
        Ok(Listen::Ignored(
            "LISTEN_PIDFDID=99 is not gracewrap's pidfd id (100): the pid was reused".into()
        ))
    );
    let bad = vars(&[("LISTEN_PID", "4242"), ("LISTEN_PIDFDID", "x")]);
    assert_eq!(read(&bad, &me), error("LISTEN_PIDFDID=x is not a number"));
}

/// A resident gracewrap's child: `LISTEN_PID` and the handoff mark both
/// name its parent; `LISTEN_PIDFDID` (the parent's) is not looked at.
#[test]
fn a_handoff_is_accepted_from_the_parent_only() {
    let me = Model::new(1);
    let from = |pid: &'static str, mark: &'static str| {
        read(
            &vars(&[
                ("LISTEN_PID", pid),
                ("GRACEWRAP_HANDOFF", mark),
                ("LISTEN_PIDFDID", "x"),
                ("LISTEN_FDS", "1"),
            ]),
            &me,
        )
    };
    assert_eq!(from("4241", "4241"), fds(&["unknown"], Some(4241)));
    assert_eq!(
        from("4240", "4240"),
        Ok(Listen::Ignored(
            "LISTEN_PID=4240 is not gracewrap's pid (4242)".into()
        ))
    );
    // The mark is compared as written: "+4241" parses to the same pid.
    assert!(matches!(from("4241", "+4241"), Ok(Listen::Ignored(_))));
}

/// Huge counts whose fds are not open fail after one fd check, with
/// nothing allocated for them: this returns at once for the largest.
#[test]
fn a_huge_count_fails_after_one_check() {
    let me = Model::new(8);
    for n in [9, 1000, 1 << 20, i32::MAX - FIRST_FD] {
        me.checks.set(0);
        let text = n.to_string();
        let v = vars(&[("LISTEN_PID", "4242"), ("LISTEN_FDS", &text)]);
        assert_eq!(
            read(&v, &me),
            Err(Error(format!(
                "LISTEN_FDS={n} but fd {} is not open",
                FIRST_FD + n - 1
            )))
        );
        assert_eq!(me.checks.get(), 1);
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// What a variable may hold: numbers near the model's pids and counts,
    /// numbers spelled oddly, huge ones, and junk.
    fn arb_number() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u32..12).prop_map(|n| n.to_string().into_bytes()),
            (4238u32..4246).prop_map(|n| n.to_string().into_bytes()),
            any::<u32>().prop_map(|n| n.to_string().into_bytes()),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            (2147483640i64..2147483650).prop_map(|n| n.to_string().into_bytes()),
            Just(b"+4242".to_vec()),
            Just(b" 4242".to_vec()),
            Just(b"4242\n".to_vec()),
            Just(b"99999999999999999999".to_vec()),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    /// One name in `LISTEN_FDNAMES`, valid or not.
    fn arb_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-z0-9_.-]{0,12}".prop_map(String::into_bytes),
            1 => Just(b"unknown".to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..8),
            1 => Just(vec![b'n'; 256]),
            1 => Just(vec![b'n'; 255]),
        ]
    }

    /// `LISTEN_FDNAMES`: names joined by ':'.
    fn arb_names() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(arb_name(), 1..10).prop_map(|names| names.join(&b':'))
    }

    fn arb_model() -> impl Strategy<Value = Model> {
        (
            prop_oneof![3 => Just(4242u32), 1 => any::<u32>()],
            prop_oneof![3 => Just(4241u32), 1 => any::<u32>()],
            proptest::option::of(prop_oneof![Just(99u64), any::<u64>()]),
            0..12 as RawFd,
            proptest::collection::vec(FIRST_FD..FIRST_FD + 12, 0..3),
        )
            .prop_map(|(pid, parent, pidfd_id, open, holes)| Model {
                pid,
                parent,
                pidfd_id,
                open_below: FIRST_FD + open,
                holes,
                checks: Cell::new(0),
            })
    }

    /// LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS, LISTEN_FDNAMES and the
    /// handoff mark, owned.
    type Owned = [Option<Vec<u8>>; 5];

    /// A process and variables that are meant for it often enough (its
    /// pid or its parent's, a count its fds could hold, that many names)
    /// and junk otherwise, each variable on its own.
    fn arb_case() -> impl Strategy<Value = (Owned, Model)> {
        arb_model().prop_flat_map(|me| {
            let some = |n: u64| Some(n.to_string().into_bytes());
            let junk = || proptest::option::of(arb_number());
            let pid = prop_oneof![
                4 => Just(some(me.pid.into())),
                2 => Just(some(me.parent.into())),
                3 => junk(),
            ];
            let pidfd_id = prop_oneof![
                3 => Just(None),
                1 => Just(me.pidfd_id.and_then(some)),
                1 => junk(),
            ];
            let most = (me.open_below - FIRST_FD + 2) as u64;
            let count = prop_oneof![
                4 => (1..=most).prop_map(some),
                1 => junk(),
            ];
            // 0: unset, 1: as many names as LISTEN_FDS says, 2: any.
            let names = (
                0..3u8,
                proptest::collection::vec(arb_name(), most as usize),
                arb_names(),
            );
            // 0: unset, 1: a copy of LISTEN_PID, 2: any.
            let handoff = (0..3u8, junk());
            (Just(me), pid, pidfd_id, count, names, handoff).prop_map(
                |(me, pid, pidfd_id, count, (how, pool, any), (mark, junk))| {
                    let names = match how {
                        0 => None,
                        1 => {
                            let k = number::<usize>(count.as_deref()).unwrap_or(1);
                            Some(pool[..k.min(pool.len())].join(&b':'))
                        }
                        _ => Some(any),
                    };
                    let handoff = match mark {
                        0 => None,
                        1 => pid.clone(),
                        _ => junk,
                    };
                    ([pid, pidfd_id, count, names, handoff], me)
                },
            )
        })
    }

    fn borrow(v: &Owned) -> Vars<'_> {
        Vars {
            pid: v[0].as_deref(),
            pidfd_id: v[1].as_deref(),
            fds: v[2].as_deref(),
            names: v[3].as_deref(),
            handoff: v[4].as_deref(),
        }
    }

    fn number<T: FromStr>(v: Option<&[u8]>) -> Option<T> {
        super::super::number(v?)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Never a panic; an accepted set is as many fds as LISTEN_FDS
        /// says, its last fd open, every name one `--listen` would take
        /// and exactly what LISTEN_FDNAMES says (or "unknown"), and the
        /// set was meant for this process; one fd check at most.
        #[test]
        fn an_accepted_set_is_what_the_variables_say((owned, me) in arb_case()) {
            let v = borrow(&owned);
            let result = read(&v, &me);
            prop_assert!(me.checks.get() <= 1, "{} fd checks", me.checks.get());
            let Ok(Listen::Fds { names, parent }) = result else {
                return Ok(());
            };
            let n: usize = number(v.fds).unwrap();
            prop_assert_eq!(names.len(), n);
            prop_assert!(me.is_open(FIRST_FD + n as RawFd - 1));
            for name in &names {
                prop_assert!(check_name(name.as_bytes()).is_ok(), "{:?}", name);
            }
            match v.names {
                None => prop_assert!(names.iter().all(|n| n == DEFAULT_NAME)),
                Some(text) => {
                    let joined = names.join(":");
                    prop_assert_eq!(joined.as_bytes(), text);
                }
            }
            let pid: u32 = number(v.pid).unwrap();
            match parent {
                None => prop_assert_eq!(pid, me.pid),
                Some(p) => {
                    prop_assert_eq!((p, pid), (me.parent, me.parent));
                    prop_assert_eq!(v.handoff, v.pid);
                }
            }
        }

        /// Any count whose last fd is not open fails naming that fd, after
        /// one check, whatever the names say.
        #[test]
        fn a_count_beyond_the_open_fds_fails_fast(
            n in 1..=i32::MAX - FIRST_FD,
            names in proptest::option::of(arb_names()),
        ) {
            let me = Model::new(16);
            prop_assume!(n > 16);
            let count = n.to_string();
            let v = Vars {
                pid: Some(b"4242"),
                fds: Some(count.as_bytes()),
                names: names.as_deref(),
                ..Vars::default()
            };
            prop_assert_eq!(
                read(&v, &me),
                Err(Error(format!("LISTEN_FDS={n} but fd {} is not open", FIRST_FD + n - 1)))
            );
            prop_assert_eq!(me.checks.get(), 1);
        }
    }
}
