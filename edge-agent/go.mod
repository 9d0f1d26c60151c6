module takt.dev/edge-agent

go 1.26.8
