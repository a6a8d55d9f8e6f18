#!/usr/bin/env bash
# Fetches the musl build of the pinned Claude Code CLI into .cache/claude-code/ (the default of CLAUDE_BIN_MUSL),
# for local sandboxes on musl images such as alpine. npm installs only the build of this host's libc: the
# package's other platform builds are optional dependencies it skips, and it refuses them as direct ones.
# The tarball must match the integrity package-lock.json records for it. Skipped when already there;
# without the registry it only warns: sandboxes on musl images then have no Claude CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "fetch-claude-musl: no musl build of the Claude CLI for $(uname -m)" >&2; exit 0 ;;
esac
version=$(node -p "require('@anthropic-ai/claude-code/package.json').version")
name="claude-code-linux-$arch-musl"
dir=".cache/claude-code/$name-$version"
[ -x "$dir/claude" ] && exit 0

expected=$(node -p "(require('./package-lock.json').packages['node_modules/@anthropic-ai/$name'] || {}).integrity || ''")
if [ -z "$expected" ]; then
  echo "fetch-claude-musl: package-lock.json records no @anthropic-ai/$name: skipped" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! npm pack --silent --json --pack-destination "$tmp" "@anthropic-ai/$name@$version" > "$tmp/pack.json"; then
  echo "fetch-claude-musl: could not fetch @anthropic-ai/$name@$version: sandboxes on musl images will have no Claude CLI" >&2
  exit 0
fi
integrity=$(node -p "require('$tmp/pack.json')[0].integrity")
if [ "$integrity" != "$expected" ]; then
  echo "fetch-claude-musl: @anthropic-ai/$name@$version has integrity $integrity, package-lock.json records $expected" >&2
  exit 1
fi
tar -xzf "$tmp"/*.tgz -C "$tmp" package/claude
mkdir -p "$dir"
chmod 755 "$tmp/package/claude"
mv "$tmp/package/claude" "$dir/claude"
echo "fetch-claude-musl: $dir/claude"
