#!/bin/sh
# takt-agent: the agent's system user, before its files arrive.
set -e
if ! getent passwd takt-agent >/dev/null; then
    adduser --system --group --home /var/lib/takt-agent --no-create-home --shell /usr/sbin/nologin takt-agent >/dev/null 2>&1 ||
        useradd --system --user-group --home-dir /var/lib/takt-agent --shell /usr/sbin/nologin takt-agent
fi
