#!/usr/bin/env bash
# benches/accept.sh - accept mode against the tools it replaces.
#
# 1. Sequential connections from one client, each read to EOF
#    (benches/accept_client.c), PROGRAM `/bin/echo hi` on stdin/stdout,
#    side by side in one run, round-robin (so drift hits all alike):
#      floor        a minimal C accept loop: accept, vfork, dup2, execv,
#                   reap (benches/accept_floor.c)
#      ssa          systemd-socket-activate -a --inetd
#      gracewrap    gracewrap -a --inetd, the default release build
#      static       the static glibc build (as in benches/overhead.sh)
#      musl         the static musl build, when rustup has the target
#      user         gracewrap --user nobody (as root only): each child is
#                   forked, not vforked (see the man page, SECURITY)
#      baseline     BASELINE=/path/to/an/older/gracewrap, when given (the
#                   build of another commit, for before and after)
#    It prints connections/s, p50 and p99 latency for each, and the
#    ratios the issue asks for (#15): gracewrap at least 1.2x
#    systemd-socket-activate's connections/s with a lower p50, and within
#    0.9x of the floor.
# 2. BURST connections at once against a slow program (`sleep SLOW; echo
#    hi`) under --max-connections CAP (benches/accept_burst.py): every one
#    must be served, and the longest wait is compared with the least the
#    cap allows, ceil(BURST / CAP) x SLOW.
#
# Usage: [BASELINE=BINARY] benches/accept.sh [CONNECTIONS [ROUNDS]]
#        (default 2000 connections per tool and round, 5 rounds)
#        BURST=2000 CAP=256 SLOW=0.5 for part 2.
# Needs: cargo, gcc with static glibc (libc6-dev), python3;
# systemd-socket-activate (Debian's systemd) for its column.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-2000}
rounds=${2:-5}
burst=${BURST:-2000}
cap=${CAP:-256}
slow=${SLOW:-0.5}
out=target/bench
mkdir -p "$out"

# shellcheck source=benches/builds.sh
. benches/builds.sh
gcc -O2 -Wall -o "$out/accept_floor" benches/accept_floor.c
gcc -O2 -Wall -o "$out/accept_client" benches/accept_client.c

declare -A cmd
cmd[floor]="$out/accept_floor PORT"
ssa=$(command -v systemd-socket-activate || true)
[[ -n $ssa ]] && cmd[ssa]="$ssa -l 127.0.0.1:PORT -a --inetd"
cmd[gracewrap]="$dyn -a --inetd -l tcp:127.0.0.1:PORT --"
cmd[static]="$static -a --inetd -l tcp:127.0.0.1:PORT --"
[[ -n $musl ]] && cmd[musl]="$musl -a --inetd -l tcp:127.0.0.1:PORT --"
tools=(floor)
[[ -n $ssa ]] && tools+=(ssa)
tools+=(gracewrap static)
[[ -n ${cmd[musl]:-} ]] && tools+=(musl)
if [[ $(id -u) == 0 ]] && id nobody >/dev/null 2>&1; then
	cmd[user]="$dyn --user nobody -a --inetd -l tcp:127.0.0.1:PORT --"
	tools+=(user)
fi
if [[ -n ${BASELINE:-} ]]; then
	cmd[baseline]="$BASELINE -a --inetd -l tcp:127.0.0.1:PORT --"
	tools+=(baseline)
fi

# A port nobody listens on, below the ephemeral range.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

server=
stop_server() {
	if [[ -n $server ]]; then
		kill -TERM "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
		server=
	fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT
tmp=$(mktemp -d)

# Sequential connections, round-robin over the tools.
for round in $(seq "$rounds"); do
	for tool in "${tools[@]}"; do
		port=$(free_port)
		# shellcheck disable=SC2086 # the command line is split on purpose
		${cmd[$tool]//PORT/$port} /bin/echo hi 2>/dev/null &
		server=$!
		"$out/accept_client" "$port" "$conns" hi >>"$tmp/$tool"
		stop_server
	done
	echo "round $round of $rounds done" >&2
done

echo
echo "sequential connections, /bin/echo hi on stdin/stdout: $((conns * rounds)) per tool, $rounds rounds"
python3 - "$tmp" "${tools[@]}" <<'PY'
import sys
d, tools = sys.argv[1], sys.argv[2:]
stats = {}
for t in tools:
    lat = sorted(float(x) for x in open(f"{d}/{t}"))
    pick = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]
    stats[t] = (1e6 * len(lat) / sum(lat), pick(0.5) / 1000, pick(0.99) / 1000)
print(f"{'tool':<10} {'conn/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
for t, (rate, p50, p99) in stats.items():
    print(f"{t:<10} {rate:>8.0f} {p50:>8.3f} {p99:>8.3f}")
print()
for t in [t for t in ("gracewrap", "static", "musl", "user", "baseline") if t in stats]:
    rate, p50, _ = stats[t]
    line = f"{t:<10} conn/s {rate / stats['floor'][0]:.2f}x the floor"
    if "ssa" in stats:
        line += (f", {rate / stats['ssa'][0]:.2f}x systemd-socket-activate,"
                 f" p50 {p50 / stats['ssa'][1]:.2f}x its p50")
    print(line)
if "baseline" in stats:
    print(f"gracewrap  conn/s {stats['gracewrap'][0] / stats['baseline'][0]:.2f}x the baseline")
PY

# Part 2: a burst against a slow program under the cap.
echo
echo "$burst connections at once, program 'sleep $slow; echo hi', --max-connections $cap:"
waves=$(((burst + cap - 1) / cap))
port=$(free_port)
"$dyn" -a --inetd --max-connections "$cap" \
	-l "tcp:127.0.0.1:$port,backlog=4096" -- sh -c "sleep $slow; echo hi" &
server=$!
sleep 0.2
# (The first connection waits for the listener like any other: the
# backlog holds them.)
line=$(python3 benches/accept_burst.py "$port" "$burst" hi) || true
stop_server
echo "$line"
python3 - "$line" "$waves" "$slow" <<'PY'
import sys
f = sys.argv[1].split()
v = dict(zip(f[::2], f[1::2]))
least = int(sys.argv[2]) * float(sys.argv[3]) * 1000
print(f"least possible longest wait: {sys.argv[2]} waves x {sys.argv[3]} s = {least:.0f} ms;"
      f" longest: {v.get('max_ms', '?')} ms ({float(v.get('max_ms', 0)) / least:.2f}x); lost: {v.get('lost', '?')}")
PY
