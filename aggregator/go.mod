module takt.dev/aggregator

go 1.26.8

require takt.dev/schemas v0.0.0

replace takt.dev/schemas => ../schemas
