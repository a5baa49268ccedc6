#!/bin/sh
# install-deps.sh: installs the Debian packages levee needs to build, test and
# benchmark, skipping the ones already present. Safe to run repeatedly;
# `make run` and `make test` call it first so a fresh Debian 12 machine works.
#
# `test` (and `all`) also installs the Node.js test clients in tests/node
# (aws-lambda-ric, the AWS SDK v3 clients) with npm, from its lockfile. That
# step runs only when tests/node/node_modules is missing or was installed
# from another package.json, lockfile or node version (a stamp file records
# which), so repeated runs cost nothing. aws-lambda-ric builds native code
# while installing (bundled curl and aws-lambda-cpp, then node-gyp): hence
# autoconf, automake, libtool, cmake, g++ and libcurl4-openssl-dev. npm 11
# runs a dependency's install scripts only when package.json's allowScripts
# names it; tests/node/package.json names aws-lambda-ric.
set -e
build="gcc make pkg-config libyaml-dev libjansson-dev libssl-dev libxxhash-dev"
test="clang libclang-rt-14-dev libhttp-parser-dev python3-pytest python3-requests python3-prometheus-client curl
      python3-boto3 autoconf automake libtool cmake g++ unzip libcurl4-openssl-dev"
# Node may come from elsewhere (NodeSource ships npm inside its nodejs);
# Debian's own packages are the fallback, with the headers node-gyp needs.
node=""
if ! command -v node >/dev/null 2>&1; then
  node="nodejs"
  test="$test nodejs npm libnode-dev"
fi
bench="wrk nginx-light"
case "${1:-all}" in
  build) want="$build"; node_clients=no ;;
  run)   want="$build $node"; node_clients=no ;;   # the example app has a Node function
  test)  want="$build $test"; node_clients=yes ;;
  *)     want="$build $test $bench"; node_clients=yes ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ "$node_clients" = yes ] || exit 0

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/node"
stamp="$dir/node_modules/.levee-install-stamp"
want_stamp="$(cat "$dir/package.json" "$dir/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1) $(node --version)"
addon="$dir/node_modules/aws-lambda-ric/dist/rapid-client.node"
if [ -f "$addon" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
  exit 0
fi
echo "install-deps: npm install in tests/node (builds aws-lambda-ric's native client, a few minutes)" >&2
# node-gyp must build against the installed node's own headers: there is no
# network to download them from, and they must match the running node.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi
cd "$dir"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund </dev/null
else
  npm install --no-audit --no-fund </dev/null
fi
# The addon reads AWS_LAMBDA_RUNTIME_API when loaded; any address will do.
if ! AWS_LAMBDA_RUNTIME_API=127.0.0.1:9 node -e "require('aws-lambda-ric/dist/rapid-client.node')" ||
   [ ! -x node_modules/.bin/aws-lambda-ric ]; then
  echo "install-deps: aws-lambda-ric's native client did not build (were its install scripts allowed?)" >&2
  exit 1
fi
echo "$want_stamp" > "$stamp"
