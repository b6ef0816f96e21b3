#!/usr/bin/env bash
# Writes fixtures/lockfiles/<project>/<manager>/: the same project locked by npm, pnpm 8 (lockfile
# 6.0), pnpm 9 (9.0), Yarn classic, Yarn Berry and Bun, each by the real package manager (pinned
# below, fetched from the npm registry with npx), resolving against the public registry. Nothing
# is installed and no script runs. The unit tests read these files; run this again only to move
# to newer package managers, and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM8=pnpm@8.15.9
PNPM9=pnpm@9.15.9
YARN1=yarn@1.22.22
BERRY=@yarnpkg/cli-dist@4.18.1
BUN=bun@1.4.5
export YARN_ENABLE_TELEMETRY=0 YARN_ENABLE_GLOBAL_CACHE=0 npm_config_audit=false npm_config_fund=false

berry_js() {
  npx -y "$BERRY" --version >/dev/null
  ls -d "$(npm config get cache)"/_npx/*/node_modules/@yarnpkg/cli-dist/bin/yarn.js | head -1
}

lock_all() {
  local project=$1
  local src="fixtures/lockfiles/$project/project"
  for m in npm pnpm6 pnpm9 yarn-classic yarn-berry bun; do
    local d="fixtures/lockfiles/$project/$m"
    rm -rf "$d" && mkdir -p "$d" && cp -r "$src"/. "$d"/
    (
      cd "$d"
      case $m in
        npm) npm install --package-lock-only --ignore-scripts >/dev/null ;;
        pnpm6) npx -y "$PNPM8" install --lockfile-only --ignore-scripts >/dev/null ;;
        pnpm9) npx -y "$PNPM9" install --lockfile-only --ignore-scripts >/dev/null ;;
        yarn-classic)
          npx -y "$YARN1" install --ignore-scripts --ignore-engines --silent >/dev/null
          rm -rf node_modules
          ;;
        yarn-berry)
          touch yarn.lock
          printf 'nodeLinker: node-modules\nenableTelemetry: false\n' > .yarnrc.yml
          node "$(berry_js)" install --mode=update-lockfile >/dev/null
          rm -rf .yarn .pnp.* .yarnrc.yml node_modules
          ;;
        bun) npx -y "$BUN" install --lockfile-only --ignore-scripts >/dev/null ;;
      esac
    )
    echo "make-lockfiles: $project/$m" >&2
  done
}

for p in $(ls fixtures/lockfiles); do lock_all "$p"; done
