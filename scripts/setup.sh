#!/usr/bin/env bash
# Sets up phonehome on this machine: a Docker engine (installed and started when none answers),
# npm dependencies, the build, and the sandbox images (built offline, only when their inputs
# changed). Safe to run again.
# With --tests, also what the tests need beyond that: Debian's chromium, in which the HTML report's
# tests open the pages, and PostgreSQL's server for the result store tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
# A Debian package the tests need: installed when missing (as root), else a clear stop.
debian_for_tests() { # <package> <what it is for>
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the tests need $1 (apt-get install $1) and this is not root" >&2
    exit 3
  fi
  echo "setup: installing $1 from Debian's packages ($2)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
if [ "${1:-}" = "--tests" ]; then
  command -v chromium >/dev/null 2>&1 || debian_for_tests chromium "the HTML report tests"
  # The store tests run a throwaway PostgreSQL server (initdb + pg_ctl as an unprivileged user).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    debian_for_tests postgresql "the result store tests"
  # The engine pool tests start a second Docker daemon on this machine.
  [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || debian_for_tests docker.io "a second Docker engine for the engine pool tests"
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
node dist/src/cli/main.js images build
