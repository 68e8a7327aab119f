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
# Targets: 0 failed requests; RSS, RssAnon and fds flat (end - start
# within 64 kB and 0 fds), no zombie. Exits 1 if a target is missed.
# Loopback only; everything it starts stops by itself at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
every=${RESTART_EVERY:-2}
threads=${THREADS:-4}
out=target/soak
mkdir -p "$out"

cargo build --release --quiet --bins --examples
gw=target/release/gracewrap
probe=target/release/examples/probe
load=target/release/examples/soakload

log=$out/gracewrap.log
samples=$out/samples.tsv
: >"$log"
PROBE_REPORT=$out/report "$gw" -s -v -l tcp:127.0.0.1:0 -- "$probe" serve 2>"$log" &
gwpid=$!
cleanup() { kill -TERM "$gwpid" 2>/dev/null || true; wait "$gwpid" 2>/dev/null || true; }
trap cleanup EXIT

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
fds() { ls "/proc/$gwpid/fd" | wc -l; }
children() { cat /proc/"$gwpid"/task/*/children | wc -w; }
zombies() {
	local n=0 c
	for c in $(cat /proc/"$gwpid"/task/*/children); do
		[ "$(awk '{ print $3 }' "/proc/$c/stat" 2>/dev/null)" = Z ] && n=$((n + 1))
	done
	echo "$n"
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
sleep 1
sample
rss0=$(status VmRSS) anon0=$(status RssAnon) fds0=$(fds)

"$load" "$addr" "$duration" "$threads" >"$out/load.txt" &
loadpid=$!
start=$(date +%s)
restarts=0
next_sample=$((start + 10))
while [ $(($(date +%s) - start)) -lt "$duration" ]; do
	sleep "$every"
	kill -HUP "$gwpid"
	restarts=$((restarts + 1))
	if [ "$(date +%s)" -ge "$next_sample" ]; then
		sample
		next_sample=$((next_sample + 10))
	fi
done
wait "$loadpid"
# The last restart settles: every generation but the newest is gone.
gens=$((restarts + 2))
wait_for "generation $gens (pid [0-9]*) is ready"
for _ in $(seq 200); do
	[ "$(children)" -eq 1 ] && break
	sleep 0.1
done
sleep 1
sample
rss1=$(status VmRSS) anon1=$(status RssAnon) fds1=$(fds)
zombies1=$(zombies) children1=$(children)

ready=$(grep -c "is ready; stopping" "$log" || true)
failed_restarts=$(grep -c "before it was ready\|was not ready within" "$log" || true)
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
samples:   $samples
REPORT

pass=1
check() { if [ "$1" = ok ]; then echo "PASS  $2"; else echo "FAIL  $2"; pass=0; fi; }
[ "$failed" -eq 0 ] && r=ok || r=no; check $r "failed requests: $failed (target 0)"
[ $((rss1 - rss0)) -le 64 ] && r=ok || r=no; check $r "VmRSS growth: $((rss1 - rss0)) kB (target <= 64)"
[ $((anon1 - anon0)) -le 64 ] && r=ok || r=no; check $r "RssAnon growth: $((anon1 - anon0)) kB (target <= 64)"
[ "$fds1" -eq "$fds0" ] && r=ok || r=no; check $r "open fds: $fds0 -> $fds1 (target equal)"
[ "$zombies1" -eq 0 ] && r=ok || r=no; check $r "zombies at the end: $zombies1 (target 0)"
[ "$pass" = 1 ]
