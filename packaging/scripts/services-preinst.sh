#!/bin/sh
# takt-services: the services' system user, before their files arrive.
set -e
if ! getent passwd takt >/dev/null; then
    adduser --system --group --home /nonexistent --no-create-home --shell /usr/sbin/nologin takt >/dev/null 2>&1 ||
        useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin takt
fi
