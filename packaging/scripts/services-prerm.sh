#!/bin/sh
# takt-services: stop the services before their files go.
set -e
if [ -d /run/systemd/system ]; then
    systemctl stop takt-ingest.service takt-aggregator.service takt-api.service takt-partitions.timer >/dev/null 2>&1 || true
    if [ "$1" = remove ]; then
        systemctl disable takt-ingest.service takt-aggregator.service takt-api.service takt-partitions.timer >/dev/null 2>&1 || true
    fi
fi
