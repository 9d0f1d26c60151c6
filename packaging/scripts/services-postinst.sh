#!/bin/sh
# takt-services: configuration readable by the services only; the partitions timer
# enabled. The services are enabled but not started: set DATABASE_URL, the Kafka and
# MQTT addresses and TAKT_PII_KEYS_FILE in /etc/takt/takt.env, run `takt-migrate up`
# as the owner, then `systemctl start takt-ingest takt-aggregator takt-api`.
set -e
chgrp takt /etc/takt /etc/takt/ingest.yaml /etc/takt/aggregator.yaml /etc/takt/api.yaml /etc/takt/takt.env
chmod 0750 /etc/takt
chmod 0640 /etc/takt/ingest.yaml /etc/takt/aggregator.yaml /etc/takt/api.yaml /etc/takt/takt.env
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable takt-ingest.service takt-aggregator.service takt-api.service takt-partitions.timer >/dev/null || true
fi
