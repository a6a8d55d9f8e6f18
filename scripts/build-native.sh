#!/usr/bin/env bash
# Builds the local sandbox engine's helper (static, so that it also runs as pid 1 inside any image),
# exports its seccomp filter for bubblewrap, and builds the loader of each sandbox's egress filter. Needs a C compiler and libseccomp-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist/native
mkdir -p "$out"
if ! command -v cc >/dev/null 2>&1 || [ ! -e /usr/include/seccomp.h ]; then
  echo "build-native: skipped (install gcc and libseccomp-dev to build the local sandbox engine's helper)" >&2
  exit 0
fi
cc -O2 -Wall -Wextra -static -o "$out/sandbox-helper.tmp" src/integrations/sandbox/local/native/sandbox-helper.c -lseccomp
"$out/sandbox-helper.tmp" seccomp-bpf > "$out/sandbox-seccomp.bpf"
mv "$out/sandbox-helper.tmp" "$out/sandbox-helper"
cc -O2 -Wall -Wextra -static -o "$out/egress-filter.tmp" src/integrations/sandbox/local/native/egress-filter.c
mv "$out/egress-filter.tmp" "$out/egress-filter"
