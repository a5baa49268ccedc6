#!/bin/sh
# install-deps.sh: installs the Debian packages levee needs to build, test and
# benchmark, skipping the ones already present. Safe to run repeatedly;
# `make run` and `make test` call it first so a fresh Debian 12 machine works.
set -e
build="gcc make pkg-config libyaml-dev libjansson-dev libssl-dev libxxhash-dev"
test="clang libclang-rt-14-dev libhttp-parser-dev python3-pytest python3-requests python3-prometheus-client curl"
bench="wrk nginx-light"
case "${1:-all}" in
  build) want="$build" ;;
  test)  want="$build $test" ;;
  *)     want="$build $test $bench" ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
