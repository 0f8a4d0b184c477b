#!/usr/bin/env bash
# One command on a fresh machine: install the Debian packages, build in release, generate text with the bundled
# demo model (single process, the embedded default). Extra arguments go to `moe-serve run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/setup.sh
swift build -c release
prompt="${PROMPT:-Love is}"
exec .build/release/moe-serve run --prompt "$prompt" --max-tokens 60 "$@"
