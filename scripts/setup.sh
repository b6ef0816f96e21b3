#!/usr/bin/env bash
# Sets up phonehome on this machine: a Docker engine (installed and started when none answers),
# npm dependencies, the build, and the sandbox images (built offline, only when their inputs
# changed). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
node dist/src/cli/main.js images build
