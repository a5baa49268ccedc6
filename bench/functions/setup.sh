#!/bin/bash
# setup.sh: installs what bench/functions/run.sh needs and is not part of
# levee's own build: the peer (serverless@3 + serverless-offline@13, exact
# versions pinned in peer/package.json and peer/package-lock.json) and the
# Debian tools the benchmark drives. Idempotent: a second run with nothing
# changed installs nothing. Not part of `make test`.
#
# Install scripts are not run (--ignore-scripts): the only ones in the peer's
# tree are serverless's postinstall (a welcome message), aws-sdk's and
# es5-ext's (notices); none builds anything the benchmark uses.
#
# The `command` runtime's cold start uses the official aws-lambda-ric, whose
# native build the integration tests already set up in tests/node
# (scripts/install-deps.sh test); RIC=1 runs that here too.
set -eu
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd ../.. && pwd)

need_apt=()
for t in wrk:wrk taskset:util-linux curl:curl node:nodejs npm:npm; do
    command -v "${t%%:*}" >/dev/null || need_apt+=("${t#*:}")
done
[ -x /usr/bin/python3 ] || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup.sh: installing ${need_apt[*]} from Debian" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

# npm ci only when the installed tree is missing or older than the lock file.
stamp=peer/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ peer/package-lock.json -nt "$stamp" ] ||
   [ ! -x peer/node_modules/.bin/serverless ]; then
    echo "setup.sh: npm ci in bench/functions/peer" >&2
    (cd peer && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
else
    echo "setup.sh: peer already installed ($(node -p 'require("./peer/node_modules/serverless/package.json").version') / serverless-offline $(node -p 'require("./peer/node_modules/serverless-offline/package.json").version'))" >&2
fi

ric=$ROOT/tests/node/node_modules/aws-lambda-ric
ric_built() { [ -n "$(find "$ric" -name '*.node' -print -quit 2>/dev/null)" ]; }
if [ "${RIC:-0}" = 1 ] && ! ric_built; then
    "$ROOT/scripts/install-deps.sh" test
fi
if ric_built; then
    echo "setup.sh: aws-lambda-ric found in tests/node" >&2
else
    echo "setup.sh: aws-lambda-ric is not built in tests/node: run.sh will skip the 'command' runtime (RIC=1 bench/functions/setup.sh builds it)" >&2
fi
chmod +x "$HERE/provided/bootstrap"
