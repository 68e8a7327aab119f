#!/usr/bin/env bash
# benches/restart.sh - graceful restarts under load: does anyone notice?
#
# Runs, one after the other in one run, the same load against the same
# server restarted RESTARTS times by
#   gracewrap     gracewrap --supervise --pid-file P -l tcp:127.0.0.1:PORT
#                 -- bench_app (the app sends READY=1 on gracewrap's
#                 NOTIFY_SOCKET; the old generation gets SIGTERM once the
#                 new one is ready)
#   gw_listen     the same, but the app never sends READY=1
#                 (BENCH_NO_NOTIFY=1) and gracewrap has no readiness
#                 option: --ready auto sees the new generation wait for
#                 connections (in poll) instead
#   start_server  Perl Server::Starter, start_server --port=127.0.0.1:PORT
#                 -- bench_app, with its default --interval and
#                 --kill-old-delay (printed; the new worker counts as up
#                 once it is still alive after --interval seconds)
# The gracewrap runs are restarted with `gracewrap --restart --pid-file P`
# (which returns once the new generation is ready; a failure counts as an
# incomplete restart), start_server with SIGHUP. The server (examples/bench_app.rs) takes
# 200 ms to start, answers fast requests at once and slow ones (1 in 50)
# after 1 s, and drains on SIGTERM: it stops accepting, finishes what is in
# flight, exits. The load (examples/loadgen.rs): 16 workers, 2000 requests
# per second in all, one connection per request.
#
# Each run: the first generation serving, CONTROL seconds of load with no
# restart (the machine's own noise), then RESTARTS restarts, each one sent
# once the previous one is done (its new generation serving and the old
# one no longer accepting: followed through the files bench_app keeps in
# BENCH_STATE_DIR) plus 100 ms, then 1 s more of load.
#
# Printed side by side: requests, failures by kind, latency of the fast
# requests, the longest accept gap (the longest time with no fast request
# answered; also counted only from when a request was waiting, which
# leaves out the load generator's own pauses; and split: before the
# restarts, i.e. the machine's own noise, and after the first one:
# overall, in the 20 ms after a signal while a generation is spawned, and
# within 10 ms of a hand-over, when the new generation answers first or
# the old one answers last), the time from the signal to the first answer
# of the new generation, and the supervisor's memory and open fds at
# restart 10 and at the last restart (after the old generations exited).
#
# Targets (issue 13): gw_listen, with no readiness option: 0 failed
# requests, every restart completed, the new generation serving within
# STARTUP_MS + 500 ms of the request (median).
# Targets (issue 5): gracewrap with a 200 ms start-up: 0 failed requests,
# longest accept gap <= 2 ms; supervisor RssAnon <= 512 kB and no growth
# of RssAnon or of its open fds between restart 10 and restart 100. The
# gap is also checked in the restart windows alone (spawning, hand-over),
# and a NOTE says when the control period already exceeds 2 ms: then the
# machine's own stalls (a VM's vCPU not scheduled, late timer wake-ups)
# dominate the overall figure.
#
# Usage: benches/restart.sh [RESTARTS]   (default 100; a few minutes)
# Environment: CONTROL (s, default 10), RATE (req/s, 2000), WORKERS (16),
# SLOW_EVERY (50), STARTUP_MS (200), PORT (first of three, 27001).
# Details land in target/bench/restart/{gracewrap,gw_listen,start_server}/:
# report.txt (each restart, each failure, the longest gaps), requests.txt
# (one line per request), signals (when each SIGHUP was sent), and
# supervisor.log (gracewrap -v, start_server's log), each line prefixed
# with the time it was written; all times in CLOCK_REALTIME microseconds.
# Needs: cargo; Server::Starter (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

restarts=${1:-100}
control=${CONTROL:-10}
rate=${RATE:-2000}
workers=${WORKERS:-16}
slow_every=${SLOW_EVERY:-50}
startup_ms=${STARTUP_MS:-200}
port=${PORT:-27001}
out=$PWD/target/bench/restart
sample_at=(10 "$restarts")

echo "building..." >&2
cargo build --quiet --release --bin gracewrap --example bench_app --example loadgen
gw=$PWD/target/release/gracewrap
app=$PWD/target/release/examples/bench_app
loadgen=$PWD/target/release/examples/loadgen

if ! command -v start_server >/dev/null; then
	echo "installing Server::Starter (libserver-starter-perl)..." >&2
	sudo=()
	(($(id -u) == 0)) || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libserver-starter-perl >&2 ||
		{ "${sudo[@]}" apt-get update -qq >&2 &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libserver-starter-perl >&2; }
fi
ss_help=$(start_server --help 2>&1 || true)
ss_version=$(start_server --version 2>&1 | grep -o '[0-9][0-9.]*' | head -1 || true)
ss_interval=$(grep -A1 -e '--interval=' <<<"$ss_help" | grep -o 'default: [0-9]*' | grep -o '[0-9]*' || echo '?')
ss_kill_old_delay=$(grep -A4 -e '--kill-old-delay=' <<<"$ss_help" | tr '\n' ' ' | grep -o '[0-9]* otherwise' | grep -o '[0-9]*' || echo '?')

rm -rf "$out"
mkdir -p "$out"
# A sleep that forks nothing (the polling below must not load the machine).
mkfifo "$out/.nap"
exec 9<>"$out/.nap"
nap() { read -r -t "$1" -u 9 _ || true; }
# Times: CLOCK_REALTIME in microseconds, ${EPOCHREALTIME/./} (no fork).
stamp() { # each line with the time it was read
	local line
	while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"; done
}

started=() # every process we started (supervisors, load generators)
cleanup() {
	local p f i alive
	for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for ((i = 0; i < 30; i++)); do
		alive=0
		for p in "${started[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	# Generations left behind (bench_app keeps a file per live process).
	for f in "$out"/*/state/[0-9]*; do
		p=${f##*/}
		if [[ -e $f && $(readlink "/proc/$p/exe" 2>/dev/null) == "$app" ]]; then
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	exec 9>&-
	rm -f "$out/.nap"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in "$port" $((port + 1)) $((port + 2)); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "port 127.0.0.1:$p is in use (PORT=... to pick others)" >&2
		exit 1
	fi
done

cpu_jiffies() { # busy idle
	local _cpu user nice system idle iowait irq softirq steal _rest
	read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
	echo "$((user + nice + system + irq + softirq + steal)) $((idle + iowait))"
}

declare -A R # LABEL.KEY -> value

# Generations of the run in $dir, from bench_app's state files: sets
# `fresh` to a serving pid other than $cur, and cur_state to the state of
# $cur (empty once it exited); `live` counts the live generations.
scan() {
	local f p st
	fresh='' cur_state='' live=0
	for f in "$dir"/state/[0-9]*; do
		[[ -e $f ]] || continue
		p=${f##*/}
		{ read -r st <"$f"; } 2>/dev/null || continue
		live=$((live + 1))
		if [[ $p == "$cur" ]]; then
			cur_state=$st
		elif [[ $st == serving ]]; then
			fresh=$p
		fi
	done
}

sample() { # LABEL PID WHEN: memory and fds of the supervisor
	local label=$1 pid=$2 when=$3 anon rss
	read -r anon rss < <(awk '/^RssAnon:/ { a = $2 } /^VmRSS:/ { r = $2 } END { print a, r }' "/proc/$pid/status")
	R[$label.rssanon_$when]=$anon
	R[$label.vmrss_$when]=$rss
	R[$label.fds_$when]=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
}

run() { # LABEL PORT COMMAND...
	local label=$1 port=$2 i sup lg t deadline incomplete=0 b0 i0 b1 i1
	shift 2
	dir=$out/$label
	mkdir -p "$dir/state"
	: >"$dir/signals"
	echo "$label: starting (load: $workers workers, $rate req/s, 1 in $slow_every slow; ${control}s without restarts, then $restarts restarts)..." >&2
	env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u LISTEN_PIDFDID \
		BENCH_STATE_DIR="$dir/state" BENCH_STARTUP_MS="$startup_ms" \
		"$@" > >(stamp >"$dir/supervisor.log") 2>&1 9>&- &
	sup=$!
	started+=("$sup")
	cur=
	deadline=$((SECONDS + 10))
	until scan && [[ -n $fresh ]]; do
		((SECONDS < deadline)) || { echo "$label: no generation serving after 10 s; see $dir/supervisor.log" >&2; exit 1; }
		nap 0.01
	done
	cur=$fresh
	read -r b0 i0 < <(cpu_jiffies)
	"$loadgen" --workers "$workers" --rate "$rate" --slow-every "$slow_every" --duration 900 \
		--stop-file "$dir/stop" --signals "$dir/signals" --report "$dir/report.txt" \
		--dump "$dir/requests.txt" "127.0.0.1:$port" >"$dir/result" 9>&- &
	lg=$!
	started+=("$lg")
	nap "$control"
	for ((i = 1; i <= restarts; i++)); do
		t=${EPOCHREALTIME/./}
		if [[ -e $dir/gw.pid ]]; then
			echo "$t" >>"$dir/signals"
			"$gw" --restart --pid-file "$dir/gw.pid" >/dev/null 2>>"$dir/restart.err" 9>&- ||
				echo "$label: gracewrap --restart failed at restart $i: see $dir/restart.err" >&2
		else
			kill -HUP "$sup"
			echo "$t" >>"$dir/signals"
		fi
		# Done when a new generation serves and the old one stopped accepting.
		deadline=$((SECONDS + 15))
		until scan && [[ -n $fresh && $cur_state != serving ]]; do
			if ((SECONDS >= deadline)); then
				echo "$label: restart $i not done after 15 s (new: ${fresh:-none}, old $cur: ${cur_state:-gone})" >&2
				incomplete=$((incomplete + 1))
				break
			fi
			nap 0.005
		done
		[[ -n $fresh ]] && cur=$fresh
		if [[ " ${sample_at[*]} " == *" $i "* ]]; then
			# Once the old generations are gone: the steady state.
			deadline=$((SECONDS + 5))
			until scan && ((live <= 1)) || ((SECONDS >= deadline)); do nap 0.01; done
			sample "$label" "$sup" "$i"
		fi
		nap 0.1
	done
	nap 1
	touch "$dir/stop"
	wait "$lg" || { echo "$label: loadgen failed" >&2; exit 1; }
	read -r b1 i1 < <(cpu_jiffies)
	kill -TERM "$sup"
	wait "$sup" || echo "$label: supervisor exited with status $?" >&2
	local k v
	while IFS='=' read -r k v; do R[$label.$k]=$v; done <"$dir/result"
	R[$label.incomplete]=$incomplete
	R[$label.cpu_busy]=$(((b1 - b0) * 100 / ((b1 - b0) + (i1 - i0))))
}

run gracewrap "$port" "$gw" -v --supervise --pid-file "$out/gracewrap/gw.pid" -l "tcp:127.0.0.1:$port" -- "$app"
run gw_listen $((port + 1)) env BENCH_NO_NOTIFY=1 "$gw" -v --supervise --pid-file "$out/gw_listen/gw.pid" \
	-l "tcp:127.0.0.1:$((port + 1))" -- "$app"
run start_server $((port + 2)) start_server "--port=127.0.0.1:$((port + 2))" -- "$app"

labels=(gracewrap gw_listen start_server)
row() { # TITLE FORMAT KEY...: one column per label, printf FORMAT over KEYs
	local title=$1 fmt=$2 l k vals
	shift 2
	printf '%-44s' "$title"
	for l in "${labels[@]}"; do
		vals=()
		for k in "$@"; do vals+=("${R[$l.$k]:--}"); done
		# shellcheck disable=SC2059
		printf ' %22s' "$(printf "$fmt" "${vals[@]}")"
	done
	echo
}

echo
echo "restart under load: $restarts restarts (gracewrap --restart; SIGHUP for start_server), ${startup_ms} ms start-up, $workers workers at $rate req/s, 1 in $slow_every requests slow (1 s)"
echo "Server::Starter ${ss_version:-?} defaults: --interval=$ss_interval s, --kill-old-delay=$ss_kill_old_delay s"
echo
printf '%-44s %22s %22s %22s\n' "" gracewrap "gracewrap, no READY=1" start_server
row "requests" '%s' requests
row "failed (refused/reset/timeout/other)" '%s (%s/%s/%s/%s)' failed failed_refused failed_reset failed_timeout failed_other
row "fast requests p50 / p99 / max (ms)" '%s / %s / %s' fast_p50_ms fast_p99_ms fast_max_ms
row "longest accept gap (ms)" '%s' longest_gap_ms
row "  only while a request waited (ms)" '%s' longest_wait_ms
row "  before the restarts (control) (ms)" '%s' longest_gap_control_ms
row "  from the first restart on (ms)" '%s' longest_gap_restarts_ms
row "    in the 20 ms after a signal (ms)" '%s' longest_gap_spawn_ms
row "    within 10 ms of a hand-over (ms)" '%s' longest_gap_handover_ms
row "signal -> new generation serving, median (ms)" '%s' serve_after_signal_p50_ms
row "signal -> new generation serving, max (ms)" '%s' serve_after_signal_max_ms
row "restarts served by a new generation" '%s/%s' restarts_served restarts
row "achieved req/s" '%s' req_per_s
row "CPU busy during the run (2 cores, %)" '%s' cpu_busy
echo
echo "supervisor memory (kB) and open fds, at restart 10 / $restarts:"
row "RssAnon" '%s / %s' "rssanon_10" "rssanon_$restarts"
row "VmRSS" '%s / %s' "vmrss_10" "vmrss_$restarts"
row "open fds" '%s / %s' "fds_10" "fds_$restarts"

check() { # LABEL VALUE OP LIMIT
	if awk -v v="$2" -v l="$4" "BEGIN { exit !(v $3 l) }"; then
		printf 'PASS  %s: %s %s %s\n' "$1" "$2" "$3" "$4"
	else
		printf 'FAIL  %s: %s, target %s %s\n' "$1" "$2" "$3" "$4"
	fi
}
g() { echo "${R[gracewrap.$1]:-NaN}"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }
echo
echo "targets (gracewrap):"
check "failed requests" "$(g failed)" "==" 0
check "longest accept gap (ms)" "$(g longest_gap_ms)" "<=" 2
check "  only while a request waited (ms)" "$(g longest_wait_ms)" "<=" 2
check "  in the 20 ms after each signal (ms)" "$(g longest_gap_spawn_ms)" "<=" 2
check "  within 10 ms of each hand-over (ms)" "$(g longest_gap_handover_ms)" "<=" 2
for l in "${labels[@]}"; do
	if ((${R[$l.cpu_busy]:-0} > 25)); then
		echo "NOTE  the machine was ${R[$l.cpu_busy]}% busy during the $l run (the benchmark itself: a few %):"
		echo "      other processes competed for the 2 cores, and the gaps and latencies measure them too"
	fi
done
if awk -v c="$(g longest_gap_control_ms)" 'BEGIN { exit !(c > 2) }'; then
	echo "NOTE  with no restart at all, the same load already showed a $(g longest_gap_control_ms) ms gap: this machine"
	echo "      stalls by itself (timer wake-ups, vCPU scheduling); gaps of that size are its noise floor"
fi
check "restarts completed" "$(minus "$restarts" "$(g incomplete)")" "==" "$restarts"
echo
echo "targets (gracewrap, a server that never sends READY=1, no readiness option; issue 13):"
gl() { echo "${R[gw_listen.$1]:-NaN}"; }
check "failed requests" "$(gl failed)" "==" 0
check "restarts completed" "$(minus "$restarts" "$(gl incomplete)")" "==" "$restarts"
check "signal -> new generation serving, median (ms)" "$(gl serve_after_signal_p50_ms)" "<=" "$((startup_ms + 500))"
check "RssAnon at restart $restarts (kB)" "$(g "rssanon_$restarts")" "<=" 512
check "RssAnon growth, restart 10 -> $restarts (kB)" "$(minus "$(g "rssanon_$restarts")" "$(g rssanon_10)")" "<=" 0
check "open fds growth, restart 10 -> $restarts" "$(minus "$(g "fds_$restarts")" "$(g fds_10)")" "<=" 0

# What gracewrap -v said, by kind of line; anything unexpected in full.
log=$out/gracewrap/supervisor.log
echo
echo "gracewrap -v log ($log):"
cut -d' ' -f2- "$log" | sed -E 's/(generation|pid) [0-9]+/\1 N/g; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/' |
	sort | uniq -c | sort -rn | sed 's/^/  /'
echo
echo "details: $out/{gracewrap,gw_listen,start_server}/report.txt"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
