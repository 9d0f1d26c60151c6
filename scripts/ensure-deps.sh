#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian machine:
# PostgreSQL server binaries (initdb, postgres), Mosquitto and its clients, kcat, curl,
# promtool (prometheus), Node.js with npm, and Chromium, through apt-get when missing. Go itself must already
# be installed (go 1.26).
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  missing+=(mosquitto)
fi
# The clients a new user tries the demo with, which the demo test runs too: kcat,
# mosquitto_pub and mosquitto_sub.
if ! command -v kcat >/dev/null 2>&1; then
  missing+=(kcat)
fi
if ! command -v mosquitto_sub >/dev/null 2>&1; then
  missing+=(mosquitto-clients)
fi
if ! command -v curl >/dev/null 2>&1; then
  missing+=(curl)
fi
# promtool (Debian's prometheus package): the alert rules' unit tests.
if ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
# Chromium: the dashboard test drives it headless.
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
# Node.js and npm: the OPC UA security tests run an independent server (node-opcua).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if ! command -v go >/dev/null 2>&1; then
  echo "ensure-deps: go is not on PATH; install Go 1.26 first (see README.md)" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${missing[*]} with apt-get"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "ensure-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1
    fi
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
