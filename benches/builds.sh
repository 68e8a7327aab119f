# benches/builds.sh - sourced by the benchmark scripts: builds gracewrap
# as they compare it, and sets
#   dyn     the default release build (target/release)
#   static  the static glibc build, not position-independent, as the
#           README's Docker section builds it (target/static)
#   musl    the static musl build, when rustup has the target; else empty
# Run from the repository root.
echo "building..." >&2
cargo build --quiet --release
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	cargo build --quiet --release --target x86_64-unknown-linux-gnu --target-dir target/static
dyn=$PWD/target/release/gracewrap
static=$PWD/target/static/x86_64-unknown-linux-gnu/release/gracewrap
musl=
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
	cargo build --quiet --release --target x86_64-unknown-linux-musl --target-dir target/musl
	musl=$PWD/target/musl/x86_64-unknown-linux-musl/release/gracewrap
fi
