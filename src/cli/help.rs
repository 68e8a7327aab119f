//! `--help` (also `-h`): the whole command line on one screen per topic.
//! man/gracewrap.1 is the complete reference; a unit test keeps every long
//! option in both.

pub const HELP: &str = "\
gracewrap - bind listening sockets, hand them over at fd 3.. the systemd way, exec PROGRAM

Usage: gracewrap [OPTIONS] [--listen [NAME=]SPEC ...] [--] PROGRAM [ARGS...]
       gracewrap --restart --pid-file PATH
       gracewrap -h | --help | -V | --version

Options (parsing stops at PROGRAM):
  -l, --listen [NAME=]SPEC  bind a socket; repeat for more. Inherited sockets (LISTEN_FDS
                            for our pid) keep fds 3.. and their names; an inherited
                            socket that matches SPEC (by NAME, else by address) is
                            reused, the others are bound and follow in command-line
                            order. NAME goes into LISTEN_FDNAMES ('unknown' if none)
      --inherited=pass|drop pass inherited sockets no --listen asked for on (default),
                            or close them and renumber the rest
  -E, --setenv NAME[=VALUE] set a variable for PROGRAM; a bare NAME copies ours
                            (the rest of the environment passes through anyway)
      --environment ...     the same (systemd-socket-activate's old name)
      --fdname NAME[:NAME]  name the passed sockets in fd order (one name: all of them)
      --user USER[:GROUP]   after binding, run PROGRAM as USER (name or uid; its groups
                            from /etc/group, or only GROUP); sets HOME, USER, LOGNAME
      --group GROUP         run PROGRAM with GROUP (name or gid) as its only group
      --chdir DIR           run PROGRAM in DIR (entered after dropping privileges)
      --no-pid              do not set LISTEN_PID/LISTEN_PIDFDID (for programs behind
                            an extra fork; libsystemd then ignores the sockets)
      --keep-fds            keep other inherited fds >= 3 open (default: close them)
      --keep-signals        pass our signal mask and ignored signals on (default: PROGRAM
                            starts with none blocked and none ignored, like under systemd)
  -v, --verbose             print 'listening on ADDRESS (fd N, name NAME)' per socket
                            (always printed when a port is 0)
  -h, --help                print this help and exit
  -V, --version             print the version and exit

Supervisor (gracewrap stays resident as PID 1 or under a service manager):
  -s, --supervise           run PROGRAM as a child on the sockets and restart it on
                            --restart-signal with zero dropped connections: a new
                            generation starts on the same sockets, the old one gets
                            --stop-signal only once the new one is ready
      --restart-signal SIG  the restart trigger (default HUP)
      --ready HOW           when a new generation is ready: auto (default: READY=1, or
                            seen waiting for connections on the sockets until one
                            sends READY=1), notify, listen, or delay:DUR (READY=1 or
                            DUR after start; also --ready-delay DUR)
      --ready-timeout DUR   a new generation not ready by then is stopped, the old one
                            keeps serving (default 30s)
      --stop-signal SIG     sent to a generation being replaced or shut down (TERM)
      --stop-timeout DUR    then SIGKILL after DUR (default 10s; 0 = at once)
      --stop-delay DUR      on SIGTERM, keep serving DUR first (STOPPING=1 at once; a
                            second SIGTERM stops at once; default 0)
      --watchdog DUR        each generation gets WATCHDOG_USEC=DUR and WATCHDOG_PID (its
                            pid); one that is ready and sends no WATCHDOG=1 for DUR, or
                            sends WATCHDOG=trigger, is replaced: a new generation
                            starts, the stuck one is stopped (default: none)
      --fdstore N           keep up to N fds the generations send with FDSTORE=1 and
                            pass them to every later generation after the sockets,
                            named by FDNAME=, as systemd's FileDescriptorStoreMax=
                            (default 0: none; at most 4096)
      --restart-on-exit     start a new generation when PROGRAM exits on its own
                            (backoff 0.1s doubling to 30s); default: exit with its status
      --process-group       each generation in its own process group; signals go to the
                            whole group. Automatic when gracewrap is in a terminal's
                            foreground: each generation takes it, and gets Ctrl-C once
      --pid-file PATH       write gracewrap's pid there (atomically, never through a
                            link); removed on exit if it is still the file written
      --restart             with --pid-file only: ask that supervisor to restart, wait;
                            exit 0 printing the new generation's pid, 1 if the
                            restart failed (the old one serves on), 125 if none answers
  Signals: the restart signal restarts; TERM stops all generations (stop-signal,
  stop-timeout, KILL) and exits; every other signal a process can catch (INT QUIT
  USR1 USR2 WINCH TSTP CONT ALRM XCPU PROF IO, the real-time ones...) is forwarded
  to the current generation (see SIGNALS in gracewrap(1)). The generations speak
  sd_notify(3) to gracewrap: READY=1, STATUS=, WATCHDOG=, EXTEND_TIMEOUT_USEC=,
  FDSTORE=1; under systemd, gracewrap passes on what systemd should see and keeps
  systemd's own watchdog fed while a generation serves. Exit status: PROGRAM's, or
  128+signal if a signal killed it. DUR: 10s, 500ms, 2m, or seconds.

systemd-socket-activate compatibility:
  -d, --datagram            bare SPECs (8080, /path) make datagram sockets
      --seqpacket           bare unix SPECs make seqpacket sockets
  -a, --accept              stay resident, accept connections, run PROGRAM once per
                            connection with it at fd 3 (LISTEN_FDNAMES=connection),
                            REMOTE_ADDR and REMOTE_PORT set
      --max-connections N   at most N PROGRAMs at once in --accept mode (default 256);
                            further connections wait in the backlog
      --max-connections-per-source N
                            at most N of them for one IP address (unix: one uid);
                            further connections from it are closed at once
      --inetd               the socket (with --accept: the connection) on stdin and
                            stdout instead of fd 3; no LISTEN_* variables
      --lazy                wait for the first connection or datagram, then exec
                            (systemd-socket-activate's default; gracewrap's is at once)
      --now                 exec at once (the default; accepted for compatibility)

SPEC ([NAME=]TYPE:ADDRESS[,OPTION...]):
  tcp:HOST:PORT       TCP; HOST: IPv4, [IPv6] or [IPv6%iface], localhost, or empty
  tcp4:HOST:PORT      (tcp::8080 = [::] dual-stack, or 0.0.0.0 without IPv6;
  tcp6:HOST:PORT       tcp4::8080 = 0.0.0.0; tcp6::8080 = [::] IPv6 only)
  udp:, udp4:, udp6:  the same for UDP (bound, not listening)
  unix:PATH           unix stream socket; PATH absolute or relative, @NAME abstract
  unixgram:PATH       unix datagram socket
  unixpacket:PATH     unix seqpacket socket (alias seqpacket:)
  vsock:CID:PORT      AF_VSOCK stream (vsock-dgram:, vsock-seqpacket:); CID a number,
                      any (or empty), hypervisor, local or host
  fd:N                an fd gracewrap already has open, passed on without rebinding
  inherit:NAME        the inherited socket(s) named NAME; an error if there is none
                      (NEW=inherit:NAME renames them)
  8080, 1.2.3.4:80, [::1]:80, /path, ./path, @name
                      systemd-socket-activate's forms (tcp, or unix stream)
  PORT 0 binds a free port and prints the real address. Hostnames other than
  localhost (= 127.0.0.1, or ::1 for tcp6/udp6) are not resolved. In a unix
  path, \\, is a comma and \\\\ a backslash
OPTION:
  backlog=N           listen(2) backlog (default: the kernel maximum, net.core.somaxconn)
  reuseport           set SO_REUSEPORT (tcp/udp only; off by default)
  v6only, dualstack   IPV6_V6ONLY on or off for IPv6 sockets (tcp: default dualstack)
  freebind            IP_FREEBIND: bind an address this host does not have (yet)
  rcvbuf=N, sndbuf=N  SO_RCVBUF, SO_SNDBUF in bytes (k, m suffixes)
  nodelay, keepalive  TCP_NODELAY, SO_KEEPALIVE (tcp; accepted sockets inherit them)
  defer_accept=SECS   TCP_DEFER_ACCEPT (tcp)
  fastopen=N          TCP_FASTOPEN queue length (tcp)
  bind_device=IFACE   SO_BINDTODEVICE (tcp/udp; needs CAP_NET_RAW)
  mark=N              SO_MARK (tcp/udp; needs CAP_NET_ADMIN)
  mode=MODE           unix socket file mode, e.g. 0660 (default: 0777 minus the umask,
                      as bind(2) makes it; connecting needs write permission)
  owner=USER, group=GROUP
                      unix socket file owner (its group defaults to USER's)
  mkdir[=MODE]        create missing parent directories (default mode 0755)
  SO_REUSEADDR is always set on TCP sockets. A stale unix socket file (nobody
  listening) is replaced; anything else at the path is an error, never deleted.

Environment given to PROGRAM: ours, minus inherited LISTEN_* variables, plus
LISTEN_FDS, LISTEN_PID, LISTEN_PIDFDID (when the kernel has pidfd ids) and LISTEN_FDNAMES.

Exit status: PROGRAM's own once it runs; 2 usage error; 125 gracewrap failed
before exec; 126 PROGRAM not executable; 127 PROGRAM not found.
See gracewrap(1) for details.
";
