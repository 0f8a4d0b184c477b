#!/usr/bin/env bash
# One command on a fresh machine: install the Debian packages, build in release, start a single-process server on
# the bundled demo model (the embedded default), ask it for text with moectl, then stop the server.
# PROMPT and PORT can be set; extra arguments go to `moectl generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/setup.sh
swift build -c release
port="${PORT:-8080}"
.build/release/moe-serve serve --port "$port" --jobs-db "${TMPDIR:-/tmp}/moe-quickstart-jobs.sqlite" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT
export MOE_SERVER="http://127.0.0.1:$port"
for _ in $(seq 1 300); do .build/release/moectl health >/dev/null 2>&1 && break; sleep 0.2; done
.build/release/moectl generate "${PROMPT:-Love is}" --max-tokens 60 --temperature 0.8 --seed 1 "$@"
