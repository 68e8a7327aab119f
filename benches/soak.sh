#!/usr/bin/env bash
# benches/soak.sh [DURATION] - the supervisor under load for DURATION
# seconds (default 600), restarted every 2 s (RESTART_EVERY), on loopback.
#
# gracewrap -s serves examples/probe.rs (READY=1 when serving, drains on
# SIGTERM) on tcp:127.0.0.1:0; examples/soakload.rs runs THREADS (4)
# clients, one request per connection, for the whole time; a loop sends
# SIGHUP every RESTART_EVERY seconds. Samples of gracewrap's VmRSS,
# RssAnon, open fds and children (zombies counted apart) go to
# target/soak/samples.tsv every 10 s. Reports failed requests, restarts
# done, and RSS, RssAnon and fd count at the start (after the first
# generation is ready) and at the end (after the last restart settled).
#
# HOSTILE=1 (run as root; needs setpriv and /usr/bin/python3): for the
# whole run (from the start sample to the end of the load), an
# unprivileged local user attacks gracewrap: benches/soak_hostile.py
# runs as uid/gid 65534 with no groups and no capabilities (setpriv, from a
# 0755 copy in a temporary directory under /tmp, removed at the end) and
#  (a) sends READY=1, STATUS=, 4 KiB of junk and FDSTORE=1 with an fd to
#      the generations' NOTIFY_SOCKET (a path in gracewrap's private 0700
#      directory, read as root from the current generation's
#      /proc/PID/environ and handed over) and to any abstract unix socket of
#      gracewrap's or the generation's in /proc/net/unix, every 50 ms; tries
#      to list that directory and to read gracewrap's environ every second;
#  (b) floods the public listener: at most HOSTILE_CONNS (200) connections
#      open at once, HOSTILE_RATE (200) new ones a second; 3 of 4 of those
#      slots for connections that never send (held until the server closes
#      them, or HOSTILE_HOLD seconds if set), the others half-closed at
#      once; every third new one reset at once. They are the attacker's:
#      not counted as requests;
#  (c) sends HUP TERM USR1 INT KILL to gracewrap's pid, one every 50 ms.
# Every datagram must be refused (EACCES) and gracewrap must log none from
# outside its generations; every signal must fail with EPERM (and restarts
# completed = restarts sent + 1). A summary of the attacks is printed;
# target/soak/hostile.txt has the attacker's counts.
#
# Targets: 0 failed requests; RSS, RssAnon and fds flat (end - start
# within 64 kB and 0 fds), no zombie, every restart completed (and none
# failed); with HOSTILE=1 also the two above. Exits 1 if a target is
# missed. Loopback only; everything it starts is stopped at the end, on
# any exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
every=${RESTART_EVERY:-2}
threads=${THREADS:-4}
hostile=${HOSTILE:-0}
hconns=${HOSTILE_CONNS:-200}
hrate=${HOSTILE_RATE:-200}
hhold=${HOSTILE_HOLD:-0}
case $hostile in
0 | 1) ;;
*) echo "soak: HOSTILE must be 0 or 1, not '$hostile'" >&2; exit 2 ;;
esac
out=target/soak
mkdir -p "$out"
rm -f "$out/hostile.txt"

cargo build --release --quiet --bins --examples
gw=target/release/gracewrap
probe=target/release/examples/probe
load=target/release/examples/soakload

log=$out/gracewrap.log
samples=$out/samples.tsv
: >"$log"
gwpid='' loadpid='' hpid='' hdir=''
stop() { # stop PID: SIGTERM, then wait for it
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	# The attacker first: its signals must never outlive gracewrap's pid.
	stop "$hpid"
	stop "$loadpid"
	stop "$gwpid"
	if [ -n "$hdir" ]; then rm -rf -- "$hdir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PROBE_REPORT=$out/report "$gw" -s -v -l tcp:127.0.0.1:0 -- "$probe" serve 2>"$log" &
gwpid=$!

wait_for() { # wait_for PATTERN: until the log has a line matching it (20 s)
	for _ in $(seq 200); do
		grep -q -- "$1" "$log" && return 0
		sleep 0.1
	done
	echo "soak: no '$1' in $log" >&2
	cat "$log" >&2
	exit 1
}
wait_for "listening on"
wait_for "generation 1 (pid [0-9]*) is ready"
addr=$(sed -n 's/^gracewrap: listening on \([^ ]*\) (fd 3).*/\1/p' "$log" | head -1)

status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$gwpid/status"; }
fds() { find "/proc/$gwpid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
children() { cat /proc/"$gwpid"/task/*/children | wc -w; }
zombies() {
	local n=0 c
	while read -r c; do
		[ "$(awk '{ print $3 }' "/proc/$c/stat" 2>/dev/null)" = Z ] && n=$((n + 1))
	done < <(cat /proc/"$gwpid"/task/*/children | tr -s ' ' '\n')
	echo "$n"
}
settle() { # until gracewrap has one child again (the old generations are gone; 30 s)
	for _ in $(seq 300); do
		[ "$(children)" -eq 1 ] && return 0
		sleep 0.1
	done
}
sample() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" "$(status VmRSS)" "$(status RssAnon)" \
		"$(fds)" "$(children)" "$(zombies)" >>"$samples"
}
printf 'time\tvmrss_kb\trssanon_kb\tfds\tchildren\tzombies\n' >"$samples"

# Warm up with one restart so that start and end compare the same state
# (a supervisor that has restarted at least once).
kill -HUP "$gwpid"
wait_for "generation 2 (pid [0-9]*) is ready"
settle
sample
rss0=$(status VmRSS) anon0=$(status RssAnon) fds0=$(fds)

# HOSTILE: what the attacker is given, rewritten (atomically) after every
# restart: the listener, gracewrap's pid, the current generation's
# NOTIFY_SOCKET and the abstract unix sockets gracewrap and it hold.
generation() { sed -n 's/^gracewrap: generation [0-9]* (pid \([0-9]*\)) is ready.*/\1/p' "$log" | tail -1; }
abstract_sockets() { # abstract_sockets PID...: their abstract unix sockets' names
	local p
	for p in "$@"; do
		readlink /proc/"$p"/fd/* 2>/dev/null || true
	done | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | sort -u >"$hdir/inodes"
	awk 'NR == FNR { want[$1] = 1; next }
		FNR > 1 && ($7 in want) && substr($8, 1, 1) == "@" { print substr($8, 2) }' \
		"$hdir/inodes" /proc/net/unix
}
notify_path='' scans=0 abstract_seen=0
targets() {
	local gen value names
	gen=$(generation)
	value=$(tr '\0' '\n' 2>/dev/null <"/proc/$gen/environ" | sed -n 's/^NOTIFY_SOCKET=//p') || true
	if [ -n "$value" ] && [ "$value" != "$notify_path" ]; then
		[ -z "$notify_path" ] || echo "soak: NOTIFY_SOCKET changed: $notify_path -> $value" >&2
		notify_path=$value
	fi
	names=$(abstract_sockets "$gwpid" "$gen")
	scans=$((scans + 1))
	[ -z "$names" ] || abstract_seen=$((abstract_seen + 1))
	{
		echo "tcp ${addr%:*} ${addr##*:}"
		echo "pid $gwpid"
		[ -z "$notify_path" ] || echo "notify $notify_path"
		[ -z "$names" ] || printf '%s\n' "$names" | sed 's/^/abstract /'
	} >"$hdir/targets.new"
	chmod 0644 "$hdir/targets.new"
	mv -f "$hdir/targets.new" "$hdir/targets"
}
if [ "$hostile" = 1 ]; then
	hdir=$(mktemp -d /tmp/gracewrap-soak-hostile.XXXXXX)
	chmod 0755 "$hdir"
	install -m 0755 benches/soak_hostile.py "$hdir/"
	targets
	[ -n "$notify_path" ] || { echo "soak: no NOTIFY_SOCKET in the generation's environment" >&2; exit 1; }
	# stdout is opened here, as root: the attacker cannot open anything of ours.
	(cd "$hdir" && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --no-new-privs \
		env -i PATH=/usr/bin:/bin /usr/bin/python3 -I soak_hostile.py \
		"$hdir/targets" "$hconns" "$hrate" "$hhold") >"$out/hostile.txt" &
	hpid=$!
	# Until the attacker runs as 65534.
	for _ in $(seq 100); do
		[ "$(awk '$1 == "Uid:" { print $2 }' "/proc/$hpid/status" 2>/dev/null)" = 65534 ] && break
		sleep 0.1
	done
fi

"$load" "$addr" "$duration" "$threads" >"$out/load.txt" &
loadpid=$!
start=$(date +%s)
restarts=0
next_sample=$((start + 10))
while [ $(($(date +%s) - start)) -lt "$duration" ]; do
	sleep "$every"
	kill -HUP "$gwpid"
	restarts=$((restarts + 1))
	if [ "$hostile" = 1 ]; then targets; fi
	if [ "$(date +%s)" -ge "$next_sample" ]; then
		sample
		next_sample=$((next_sample + 10))
	fi
done
wait "$loadpid"
loadpid=''
# The attack ends with the load; the attacker prints its counts on SIGTERM.
stop "$hpid"
hpid=''
# The last restart settles: every generation but the newest is gone.
gens=$((restarts + 2))
wait_for "generation $gens (pid [0-9]*) is ready"
settle
sample
rss1=$(status VmRSS) anon1=$(status RssAnon) fds1=$(fds)
zombies1=$(zombies) children1=$(children)

ready=$(grep -c "is ready; stopping" "$log" || true)
failed_restarts=$(grep -c "before it was ready\|was not ready within" "$log" || true)
killed=$(grep -c "did not stop within" "$log" || true)
read -r _ ok _ failed <"$out/load.txt"
cat <<REPORT
soak: ${duration} s, SIGHUP every ${every} s, ${threads} clients, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)
requests:  ok $ok, failed $failed
$(grep '^failure' "$out/load.txt" || true)
restarts:  $restarts sent, $ready completed (generations up to $gens), $failed_restarts failed
gracewrap  start      end      (pid $gwpid)
VmRSS kB   $rss0  $rss1
RssAnon kB $anon0  $anon1
open fds   $fds0  $fds1
children   1  $children1 (zombies: $zombies1)
old generations killed after --stop-timeout: $killed
samples:   $samples
REPORT

if [ "$hostile" = 1 ]; then
	h() { awk -v k="$1" '$1 == k { n = $2 } END { print n + 0 }' "$out/hostile.txt"; }
	strangers=$(grep -c "ignored a notification from pid" "$log" || true)
	n_tried=$(($(h notify_tried) + $(h abstract_tried)))
	n_eacces=$(($(h notify_eacces) + $(h abstract_eacces)))
	n_accepted=$(($(h notify_accepted) + $(h abstract_accepted)))
	n_other=$(($(h notify_other) + $(h abstract_other)))
	hold_text="held until the server closes them"
	[ "$hhold" = 0 ] || hold_text="held up to $hhold s"
	cat <<HOSTILE
hostile:   uid $(h uid) gid $(h gid), $(h groups) groups, $(h seconds) s; NOTIFY_SOCKET $notify_path; abstract unix sockets held by gracewrap or its generation: in $abstract_seen of $scans looks
notify:    $n_tried datagrams tried, $n_eacces refused (EACCES), $n_accepted accepted, $n_other other errors; gracewrap logged $strangers from outside its generations
recon:     $(h recon_tried) tried (list the private directory, read gracewrap's environ), $(h recon_refused) refused, $(h recon_succeeded) succeeded
signals:   $(h signal_tried) tried (HUP TERM USR1 INT KILL to pid $gwpid), $(h signal_eperm) refused (EPERM), $(h signal_delivered) delivered, $(h signal_other) other errors
tcp:       $(h tcp_opened) connections, $hrate new a second, at most $hconns open (seen: $(h tcp_max_open)): never sent on $(h tcp_idle) ($hold_text), half-closed $(h tcp_halfclose), reset $(h tcp_reset); $(h tcp_connect_failed) connects failed
           closed by the server: never-sent $(h tcp_closed_by_server_idle), half-closed $(h tcp_closed_by_server_halfclose) (answered $(h tcp_answered_halfclose)); reset by the server $(h tcp_reset_by_server); attacker's counts: $out/hostile.txt
HOSTILE
fi

pass=1
check() { if [ "$1" = ok ]; then echo "PASS  $2"; else echo "FAIL  $2"; pass=0; fi; }
[ "$failed" -eq 0 ] && r=ok || r=no; check "$r" "failed requests: $failed (target 0)"
[ $((rss1 - rss0)) -le 64 ] && r=ok || r=no; check "$r" "VmRSS growth: $((rss1 - rss0)) kB (target <= 64)"
[ $((anon1 - anon0)) -le 64 ] && r=ok || r=no; check "$r" "RssAnon growth: $((anon1 - anon0)) kB (target <= 64)"
[ "$fds1" -eq "$fds0" ] && r=ok || r=no; check "$r" "open fds: $fds0 -> $fds1 (target equal)"
[ "$zombies1" -eq 0 ] && r=ok || r=no; check "$r" "zombies at the end: $zombies1 (target 0)"
[ "$ready" -eq $((restarts + 1)) ] && [ "$failed_restarts" -eq 0 ] && r=ok || r=no
check "$r" "restarts completed: $ready of $restarts + 1 (warm-up), $failed_restarts failed (target all, 0)"
if [ "$hostile" = 1 ]; then
	[ "$(h uid)" = 65534 ] && [ "$(h groups)" = 0 ] && [ "$(h tcp_opened)" -gt 0 ] &&
		[ "$n_tried" -gt 0 ] && [ "$(h signal_tried)" -gt 0 ] && r=ok || r=no
	check "$r" "the attacker ran as uid $(h uid) with $(h groups) groups for $(h seconds) s (target 65534, 0, every attack tried)"
	[ "$n_accepted" -eq 0 ] && [ "$n_eacces" -eq "$n_tried" ] && [ "$strangers" -eq 0 ] &&
		[ "$(h recon_succeeded)" -eq 0 ] && r=ok || r=no
	check "$r" "attacker datagrams accepted: $n_accepted, refused $n_eacces of $n_tried, logged by gracewrap $strangers (target 0, all, 0)"
	[ "$(h signal_delivered)" -eq 0 ] && [ "$(h signal_eperm)" -eq "$(h signal_tried)" ] && r=ok || r=no
	check "$r" "attacker signals delivered: $(h signal_delivered), refused $(h signal_eperm) of $(h signal_tried) (target 0, all)"
fi
[ "$pass" = 1 ]
