#!/usr/bin/env bash
# Scrape check for the echo example's `/metrics` (run by run.sh against a server started
# with --metrics): a session with a tool call, a refused request and a DELETE, then
# `GET /metrics`, checking that the documented Prometheus names and labels are there
# (the drain gauge at 0: the server is not draining; the other drain metrics appear
# only once a drain has begun, and the server exits after it).
# Closes with `N passed, M failed` like every interop suite.
#
#   bash tests/interop/metrics-scrape.sh http://127.0.0.1:PORT/mcp
set -uo pipefail

url="${1:?usage: metrics-scrape.sh MCP_URL}"
metrics_url="${url%/mcp}/metrics"
passed=0
failed=0
check() { # label, command...
  local label="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $label"; else failed=$((failed + 1)); echo "FAIL $label"; fi
}
post() { # session-or-empty, body -> prints headers and body
  local session="$1" body="$2"
  curl -s -D - --max-time 10 -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    ${session:+-H "mcp-session-id: $session"} -d "$body" "$url"
}

init='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"scrape","version":"1"}}}'
session="$(post "" "$init" | tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')"
check "initialize gives a session" test -n "$session"
post "$session" '{"jsonrpc":"2.0","method":"notifications/initialized"}' >/dev/null
call='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"scrape"}}}'
check "tools/call answered" bash -c '[[ "$1" == *"\"scrape\""* ]]' _ "$(post "$session" "$call")"
refused="$(post "no-such-session" '{"jsonrpc":"2.0","id":2,"method":"ping"}' | head -1)"
check "unknown session refused (404)" bash -c '[[ "$1" == *" 404"* ]]' _ "$refused"
deleted="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE -H "mcp-session-id: $session" "$url")"
check "DELETE ends the session" test "$deleted" = 200

body="$(mktemp)"
status="$(curl -s -o "$body" -w '%{http_code}' --max-time 10 "$metrics_url")"
check "GET /metrics answers 200" test "$status" = 200
has() { grep -qE "$1" "$body"; }
for pattern in \
  '^# TYPE mcp_server_operation_duration_seconds histogram$' \
  '^mcp_server_operation_duration_seconds_count\{mcp_method_name="initialize",mcp_protocol_version="2025-06-18",network_transport="tcp"\} [1-9][0-9]*$' \
  '^mcp_server_operation_duration_seconds_bucket\{mcp_method_name="tools/call",.*le="\+Inf"\} [1-9][0-9]*$' \
  '^mcp_server_operation_duration_seconds_count\{mcp_method_name="ping",error_type="-32001",network_transport="tcp"\} [1-9][0-9]*$' \
  '^mcp_server_session_duration_seconds_count\{.*mcp_protocol_version="2025-06-18".*\} [1-9][0-9]*$' \
  '^mcp_server_session_created_total [1-9]' \
  '^mcp_server_session_closed_total\{mcp_session_close_reason="deleted"\} [1-9]' \
  '^mcp_server_session_active ' \
  '^mcp_server_rejections_total\{mcp_rejection_reason="session_not_found"\} [1-9]' \
  '^mcp_server_store_duration_seconds_count\{mcp_store_operation="load"\} [1-9]' \
  '^mcp_server_store_duration_seconds_count\{mcp_store_operation="create"\} [1-9]' \
  '^# TYPE mcp_server_drain_active gauge$' \
  '^mcp_server_drain_active 0$'
do
  check "metrics: $pattern" has "$pattern"
done
if [ "$failed" -gt 0 ]; then echo "--- /metrics"; sed 's/^/  /' "$body" | grep -v '_bucket' | head -60; fi
rm -f "$body"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
