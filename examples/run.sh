#!/bin/sh
# run.sh: starts the example origin and levee in front of it, in the
# foreground. Ctrl-C stops both. Called by `make run`.
set -e
cd "$(dirname "$0")"
/usr/bin/python3 origin.py 3000 &
origin=$!
trap 'kill $origin 2>/dev/null' EXIT INT TERM
cat <<MSG
levee example: try
  curl -i http://127.0.0.1:8080/hello
  curl -i http://127.0.0.1:8080/r/tv-ad-2026      (each scan is captured; the scans function logs the counts)
  curl -i http://127.0.0.1:8080/events/list      (again within 10 s: X-Cache: HIT)
  curl -i -d '{"event":"the-levees-live","tickets":2}' http://127.0.0.1:8080/checkout
  curl -s http://127.0.0.1:9901/status
MSG
../levee serve -c levee.yaml
