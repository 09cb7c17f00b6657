#!/usr/bin/env bash
# System packages driftgate needs beyond Python: a Java runtime for PMML models, and
# Prometheus (with promtool) and Alertmanager for the dashboard and alert tests
# (tests/dashboards). Installs only what is missing; needs root (or sudo) for apt-get.
# The tests run the binaries themselves on free loopback ports with temporary folders;
# they never use the packages' services (which apt may start where systemd runs).
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "driftgate: missing system packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
echo "driftgate: installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
