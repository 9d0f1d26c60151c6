module takt.dev/plant

go 1.26.8

require (
	github.com/jackc/pgx/v5 v5.13.0
	takt.dev/schemas v0.0.0
	takt.dev/servicekit v0.0.0
)

require (
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/kr/pretty v0.3.1 // indirect
	github.com/rogpeppe/go-internal v1.16.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	takt.dev/migrations => ../migrations
	takt.dev/schemas => ../schemas
	takt.dev/servicekit => ../servicekit
	takt.dev/testkit => ../testkit
)
