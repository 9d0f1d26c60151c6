#!/bin/sh
# takt-services: on purge, the configuration and the user go too (the data is in
# PostgreSQL and Kafka, which this package does not touch).
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
if [ "$1" = purge ]; then
    rm -rf /etc/takt
    if getent passwd takt >/dev/null; then deluser --system takt >/dev/null 2>&1 || userdel takt || true; fi
    if getent group takt >/dev/null; then delgroup --system takt >/dev/null 2>&1 || groupdel takt || true; fi
fi
