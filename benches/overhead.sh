#!/usr/bin/env bash
# benches/overhead.sh - what does putting gracewrap in front of a program cost?
#
# Times, side by side in one run (round-robin, so drift hits all alike):
#   self        a program that binds its own sockets and exits (no wrapper)
#   yardstick   a minimal static C exec wrapper: bind, dup2 to 3.., setenv,
#               execvp (benches/yardstick.c) - the floor for any exec wrapper
#   gracewrap   the static build (-C target-feature=+crt-static
#               -C relocation-model=static, as the README builds it)
#   gracewrap   the default (dynamically linked) release build
#   gracewrap-musl   the static musl build, when rustup has the
#               x86_64-unknown-linux-musl target (README, Docker)
#   systemd-socket-activate   (waits for a first connection: the driver
#               connects to trigger it, and that connect is counted)
#   systemfd    (cargo install systemfd, into target/bench-tools)
#   baseline    BASELINE=/path/to/an/older/gracewrap, when given: a build
#               of another commit, to compare a change before and after
#               in the same run
# each with PROGRAM = /bin/true, for 1 and for 1000 TCP listeners on
# 127.0.0.1, and prints median microseconds and ratios. Then gracewrap's
# private memory (RssAnon) at the moment it calls execve, read with gdb.
#
# Targets (issue 2): static within 1.10x of the yardstick, default build
# within 1.50x, both below systemd-socket-activate and systemfd; RssAnon
# before exec under 512 kB with 1000 sockets.
#
# Usage: [BASELINE=BINARY] benches/overhead.sh [RUNS]
#        (RUNS default 2000; a tenth for 1000 sockets)
# Needs: cargo, gcc with static glibc (libc6-dev); optional: gdb,
# systemd (systemd-socket-activate), network access for cargo install.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-2000}
out=target/bench
mkdir -p "$out"

# shellcheck source=benches/builds.sh
. benches/builds.sh
gcc -O2 -Wall -o "$out/spawn" benches/spawn.c
gcc -O2 -Wall -static -o "$out/yardstick" benches/yardstick.c 2>/dev/null

ssa=$(command -v systemd-socket-activate || true)
systemfd=$(command -v systemfd || true)
if [[ -z $systemfd ]]; then
	systemfd=$PWD/target/bench-tools/bin/systemfd
	if [[ ! -x $systemfd ]]; then
		echo "installing systemfd into target/bench-tools (cargo install)..." >&2
		cargo install --quiet systemfd --root target/bench-tools >&2 || systemfd=
	fi
fi

# Ports: one block of 9 x 1100 consecutive ports nobody listens on (the
# benchmark must not collide with servers on this machine), then
# 1100 ports per tool.
block=
pick_block() {
	local used base
	used=$(ss -Htln | awk '{ sub(/.*:/, "", $4); print $4 }' | sort -un)
	for _ in $(seq 100); do
		# Below the ephemeral range (32768-60999), where outgoing connections
		# of anything else running here would collide.
		base=$((10000 + RANDOM % (32768 - 10000 - 9900)))
		if ! awk -v b="$base" '$1 >= b && $1 < b + 9900 { f = 1 } END { exit !f }' <<<"$used"; then
			block=$base
			return
		fi
	done
	echo "no free block of 9900 ports found" >&2
	exit 1
}
pick_block
port_base() { echo $((block + $1 * 1100)); }

specs() { # FORMAT COUNT BASE: one listen argument per port
	local fmt=$1 n=$2 base=$3 i
	for ((i = 0; i < n; i++)); do printf -- "$fmt " $((base + i)); done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A median
bench() { # COUNT RUNS
	local n=$1 runs=$2 labels=() cmds=() b
	b=$(port_base 0); labels+=(self); cmds+=("$out/yardstick --self $n $b")
	b=$(port_base 1); labels+=(yardstick); cmds+=("$out/yardstick $n $b /bin/true")
	b=$(port_base 2); labels+=(gracewrap-static); cmds+=("$static $(specs '-l tcp:127.0.0.1:%d' "$n" "$b")-- /bin/true")
	b=$(port_base 3); labels+=(gracewrap); cmds+=("$dyn $(specs '-l tcp:127.0.0.1:%d' "$n" "$b")-- /bin/true")
	if [[ -n $musl ]]; then
		b=$(port_base 7); labels+=(gracewrap-musl)
		cmds+=("$musl $(specs '-l tcp:127.0.0.1:%d' "$n" "$b")-- /bin/true")
	fi
	if [[ -n ${BASELINE:-} ]]; then
		b=$(port_base 8); labels+=(baseline)
		cmds+=("$BASELINE $(specs '-l tcp:127.0.0.1:%d' "$n" "$b")-- /bin/true")
	fi
	if [[ -n $ssa ]]; then
		b=$(port_base 4); labels+=(systemd-socket-activate)
		cmds+=("@$b $ssa $(specs '-l 127.0.0.1:%d' "$n" "$b")/bin/true")
	fi
	if [[ -n $systemfd ]]; then
		b=$(port_base 5); labels+=(systemfd)
		cmds+=("$systemfd --quiet $(specs '-s tcp::127.0.0.1:%d' "$n" "$b")-- /bin/true")
	fi
	mapfile -t results < <("$out/spawn" "$runs" "${cmds[@]}")
	printf '\n%d listener(s), %d runs each, PROGRAM=/bin/true\n' "$n" "$runs"
	printf '%-26s %10s %10s %10s %12s\n' tool median_us p90_us "x self" "x yardstick"
	local i med p90 self yard
	read -r self _ <<<"${results[0]}"
	read -r yard _ <<<"${results[1]}"
	for i in "${!labels[@]}"; do
		read -r med _ p90 <<<"${results[$i]}"
		median[${labels[$i]}-$n]=$med
		printf '%-26s %10s %10s %10s %12s\n' "${labels[$i]}" "$med" "$p90" "$(ratio "$med" "$self")" "$(ratio "$med" "$yard")"
	done
}

bench 1 "$runs"
bench 1000 $((runs / 10))

check() { # LABEL VALUE OP LIMIT
	if awk -v v="$2" -v l="$4" "BEGIN { exit !(v $3 l) }"; then
		printf 'PASS  %s: %s %s %s\n' "$1" "$2" "$3" "$4"
	else
		printf 'FAIL  %s: %s, target %s %s\n' "$1" "$2" "$3" "$4"
	fi
}

echo
echo "targets:"
for n in 1 1000; do
	yard=${median[yardstick-$n]}
	check "static/yardstick, $n socket(s)" "$(ratio "${median[gracewrap-static-$n]}" "$yard")" "<=" 1.10
	check "default/yardstick, $n socket(s)" "$(ratio "${median[gracewrap-$n]}" "$yard")" "<=" 1.50
	for other in systemd-socket-activate systemfd; do
		[[ -n ${median[$other-$n]:-} ]] || { echo "SKIP  $other not available"; continue; }
		check "default below $other, $n socket(s) (us)" "${median[gracewrap-$n]}" "<" "${median[$other-$n]}"
	done
done

# Private memory at the moment gracewrap calls execve(2): gdb stops at the
# syscall and reads /proc/PID/status (total RSS is mostly shared libc pages).
rss() { # BINARY COUNT
	gdb -q -batch -ex 'set startup-with-shell off' -ex 'catch syscall execve' -ex run \
		-ex 'python import gdb; s = open("/proc/%d/status" % gdb.selected_inferior().pid).read(); print(" ".join(l.split()[1] for l in s.splitlines() if l.startswith(("RssAnon", "VmRSS"))))' \
		--args "$1" $(specs '-l tcp:127.0.0.1:%d' "$2" "$(port_base 6)") -- /bin/true 2>/dev/null | tail -1
}
echo
if command -v gdb >/dev/null; then
	echo "memory just before execve (kB):"
	printf '%-26s %10s %10s\n' build RssAnon VmRSS
	for build in static dyn; do
		for n in 1 1000; do
			read -r vmrss rssanon <<<"$(rss "${!build}" "$n")"
			if [[ ! $vmrss =~ ^[0-9]+$ || ! $rssanon =~ ^[0-9]+$ ]]; then
				echo "FAIL  memory: gracewrap did not reach execve under gdb ($build, $n sockets)"
				continue
			fi
			printf '%-26s %10s %10s\n' "$build, $n socket(s)" "$rssanon" "$vmrss"
			[[ $n == 1000 ]] && check "RssAnon $build, 1000 sockets (kB)" "$rssanon" "<" 512
		done
	done
else
	echo "SKIP  memory: gdb not installed (apt-get install gdb)"
fi
echo
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
