#!/bin/sh
# The whole test suite, from a fresh clone: install, build, lint, format, then every test.
set -eu
cd "$(dirname "$0")/.."
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
