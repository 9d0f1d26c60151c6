module takt.dev/servicekit

go 1.26.8

require gopkg.in/yaml.v3 v3.0.1

require github.com/cenkalti/backoff/v5 v5.0.3
