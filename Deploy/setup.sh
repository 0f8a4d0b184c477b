#!/usr/bin/env bash
# Installs the Debian packages the project builds and tests against (OpenMPI, OpenBLAS, SQLite; Python 3 and
# prometheus_client check the /metrics text in the tests). Safe to run again.
set -euo pipefail
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev libsqlite3-dev iproute2 util-linux python3 python3-prometheus-client)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
