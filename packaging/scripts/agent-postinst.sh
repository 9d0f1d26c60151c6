#!/bin/sh
# takt-agent: its state directory (the disk buffer) and configuration readable by
# the agent only. The service is enabled but not started: edit
# /etc/takt-agent/agent.yaml, check it with `takt-agent validate -c
# /etc/takt-agent/agent.yaml`, then `systemctl start takt-agent`.
set -e
install -d -m 0750 -o takt-agent -g takt-agent /var/lib/takt-agent
chgrp takt-agent /etc/takt-agent /etc/takt-agent/agent.yaml
chmod 0750 /etc/takt-agent
chmod 0640 /etc/takt-agent/agent.yaml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable takt-agent.service >/dev/null || true
fi
