# The handler for provided/echo/bootstrap: wraps the event in {"echo": ...}.
handler() {
  echo "bash handler got: $1" >&2
  printf '{"echo":%s,"runtime":"provided"}' "$1"
}
