#!/bin/sh
# The whole test suite, from a fresh clone: install, build, lint, format, then every test.
set -eu
cd "$(dirname "$0")/.."

# Debian's QEMU is the reference peer for the stream interoperability tests. Install it when
# we can (root with apt, as on CI); without it those tests skip and say so.
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== install qemu-system-x86 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null ||
      echo "   could not install qemu-system-x86: the QEMU interoperability tests will skip"
  else
    echo "== qemu-system-x86_64 not found: the QEMU interoperability tests will skip"
  fi
fi
echo "== install (npm ci)"
npm ci --no-audit --no-fund --loglevel=error
echo "== build (tsc, strict: type errors fail here)"
rm -rf dist
npx tsc -p .
echo "== lint (eslint, type-aware)"
npx eslint .
echo "== format (prettier --check)"
npx prettier --check . >/dev/null || { npx prettier --list-different .; exit 1; }
echo "== tests (node:test on dist/)"
node --test --test-timeout=300000 $(find dist/test -name '*.test.js' | sort)
