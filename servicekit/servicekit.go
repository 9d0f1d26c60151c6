// Package servicekit is the little the Takt services (takt-ingest,
// takt-aggregator, takt-api) share beyond the wire contract: reading their YAML
// configuration file and serving HTTP until shutdown.
package servicekit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadYAML decodes the YAML file at path into cfg, which holds the defaults;
// unknown fields are errors that name the file. An empty path leaves cfg as it is,
// and so does an empty file.
func LoadYAML(path string, cfg any) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Serve serves h on ln until ctx ends, then shuts the server down, giving requests
// in flight up to 10 s.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
