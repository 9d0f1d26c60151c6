#!/bin/sh
# takt-agent: stop the service before its files go (SIGTERM: the agent keeps what it
# has not sent in its buffer, which stays in /var/lib/takt-agent).
set -e
if [ -d /run/systemd/system ]; then
    systemctl stop takt-agent.service >/dev/null 2>&1 || true
    if [ "$1" = remove ]; then systemctl disable takt-agent.service >/dev/null 2>&1 || true; fi
fi
