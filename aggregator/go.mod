module takt.dev/aggregator

go 1.26.8
