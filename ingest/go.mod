module takt.dev/ingest

go 1.26.8
