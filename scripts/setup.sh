#!/usr/bin/env bash
# Sets up phonehome on this machine: a Docker engine (installed and started when none answers),
# npm dependencies, the build, and the sandbox images (built offline, only when their inputs
# changed). Safe to run again.
# With --tests, also what the tests need beyond that: Debian's chromium, in which the HTML report's
# tests open the pages, and PostgreSQL's server for the result store tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
if [ "${1:-}" = "--tests" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the tests need chromium (apt-get install chromium) and this is not root" >&2
    exit 3
  fi
  echo "setup: installing chromium from Debian's packages (the HTML report tests)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The store tests run a throwaway PostgreSQL server (initdb + pg_ctl as an unprivileged user).
if [ "${1:-}" = "--tests" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the tests need PostgreSQL's server (apt-get install postgresql) and this is not root" >&2
    exit 3
  fi
  echo "setup: installing PostgreSQL from Debian's packages (the result store tests)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
node dist/src/cli/main.js images build
