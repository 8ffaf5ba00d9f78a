# Sourced by the scripts that run what they build. cargo builds into ./target unless
# CARGO_TARGET_DIR or a .cargo/config.toml says otherwise; a script that ran ./target/release/…
# regardless failed with "No such file" there, or (worse) ran an older build left in ./target.
# Usage: . scripts/cargo-target.sh; release=$(cargo_target_dir)/release

# Prints the directory cargo builds this workspace into (as `cargo metadata` reports it).
cargo_target_dir() {
  local dir
  dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  if [ -z "$dir" ]; then
    echo "cannot tell where cargo builds this workspace (\`cargo metadata\` failed): run the script from a checkout of the repository with cargo on PATH" >&2
    return 1
  fi
  printf '%s\n' "$dir"
}
