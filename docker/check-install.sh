#!/bin/sh
# What CI checks of the images without Docker: the cpu install (docker/install.sh, the steps
# Dockerfile.cpu runs) into a fresh venv, then the runner installed there serves a live stream
# end to end: `serve --with-orchestrator` from that venv, `smoke` through its orchestrator.
#
#   docker/check-install.sh [VENV]     (default build/install-check; removed first)
#
# TORCH_INDEX_URL is passed to install.sh; unset here means pip's configured indexes.
set -eu
cd "$(dirname "$0")/.."
venv=${1:-build/install-check}
unset PYTHONPATH  # test what was installed, not this checkout
rm -rf "$venv"
TORCH_INDEX_URL=${TORCH_INDEX_URL-} sh docker/install.sh cpu "$venv"

bin="$venv/bin/comfystream-byoc"
workspace=$(mktemp -d)
log="$venv/serve.log"
ports=$("$venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')
port=${ports% *}
orch_port=${ports#* }

"$bin" serve --host 127.0.0.1 --port "$port" --workspace "$workspace" --engine builtin \
  --state-dir "$workspace/state" --with-orchestrator --orchestrator-port "$orch_port" \
  > "$log" 2>&1 &
serve_pid=$!
stop_serve() {
  kill -INT "$serve_pid" 2> /dev/null || true
  wait "$serve_pid" 2> /dev/null || true
  rm -rf "$workspace"
}
trap stop_serve EXIT

# Healthy and registered with the stand-in (up to 3 minutes on a busy machine).
tries=0
until "$bin" health --url "http://127.0.0.1:$port" > /dev/null 2>&1 \
  && "$venv/bin/python" -c "
import json, sys, urllib.request
body = json.load(urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=5))
sys.exit(0 if any(o.get('state') == 'registered' for o in body.get('orchestrators', {}).values()) else 1)
"; do
  tries=$((tries + 1))
  if [ "$tries" -gt 180 ] || ! kill -0 "$serve_pid" 2> /dev/null; then
    echo "check-install: the installed runner did not become healthy and registered" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 1
done

"$bin" smoke --orch-url "http://127.0.0.1:$orch_port" --seconds 3 --width 320 --height 240
echo "check-install: the cpu install serves streams"
