#!/bin/sh
# takt-agent: on purge, the buffer and the user go too.
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/takt-agent /etc/takt-agent
    if getent passwd takt-agent >/dev/null; then deluser --system takt-agent >/dev/null 2>&1 || userdel takt-agent || true; fi
    if getent group takt-agent >/dev/null; then delgroup --system takt-agent >/dev/null 2>&1 || groupdel takt-agent || true; fi
fi
