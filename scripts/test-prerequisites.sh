#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian/Ubuntu machine (run as root or with sudo):
# bubblewrap, slirp4netns (each sandbox's network), a C compiler and libseccomp for the local sandboxes (their helper is built from C),
# skopeo and umoci (registry images) with docker-registry, busybox-static and apache2-utils for their tests, Chromium for the browser tests, a running PostgreSQL.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
[ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v setcap >/dev/null 2>&1 || missing+=(libcap2-bin)
command -v ps >/dev/null 2>&1 || missing+=(procps)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
# Registry images: skopeo pulls, umoci unpacks; the tests run docker-registry on loopback with busybox images (htpasswd: apache2-utils).
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || missing+=(busybox-static)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
# Image roots of the Claude-in-images tests (test/support/image-roots.ts): musl's loader.
command -v ld-musl-config >/dev/null 2>&1 || missing+=(musl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not running on 127.0.0.1:5432 and not installed; installing it"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "Starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
