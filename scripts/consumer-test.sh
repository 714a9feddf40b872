#!/usr/bin/env bash
# The package as a user gets it: npm pack, install the tarball into a fresh project, type-check
# a consumer (test/consumer/consumer.ts: strict, skipLibCheck false) against the installed
# declarations, run it (self-play and one SPIN update on the demo model), then run the demo
# from that project: `npx spin-native demo --iterations=1`. Prints how the addon was installed
# (prebuild or compile) and how long the install took.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

tarball="$repo/$(npm pack --silent | tail -n 1)"
project=$(mktemp -d /tmp/spin-consumer.XXXXXX)
trap 'rm -rf "$project" "$tarball"' EXIT
cp test/consumer/consumer.ts test/consumer/tsconfig.json "$project/"
cd "$project"
cat >package.json <<'JSON'
{ "name": "spin-consumer", "version": "1.0.0", "private": true, "type": "module" }
JSON
# Only the addon's install is timed: the compilers come from the registry first.
npm install --no-audit --no-fund --save-dev typescript@5 @types/node@20 >/dev/null
install_start=$SECONDS
npm install --no-audit --no-fund --foreground-scripts "$tarball" >install.log 2>&1 || { cat install.log; exit 1; }
grep -E "spin-native|added" install.log || true
echo "consumer: npm install of the tarball took $((SECONDS - install_start)) s"
[[ -f node_modules/spin-native/dist/lib/index.js ]] || { echo "consumer: spin-native is not installed" >&2; exit 1; }
# A tarball with a prebuild for this machine's libtorch installs without compiling.
listing=$(tar -tzf "$tarball")
if [[ $listing == *"package/prebuilds/"* && ${LIBTORCH:-} == system ]]; then
  grep -q "using the prebuilt addon" install.log || { echo "consumer: the prebuild was not used" >&2; exit 1; }
fi

npx tsc -p tsconfig.json
echo "consumer: strict type-check (skipLibCheck false) passed"
node out/consumer.js
npx spin-native demo --iterations=1
echo "consumer: passed"
