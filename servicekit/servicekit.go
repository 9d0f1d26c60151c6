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
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadYAML decodes the YAML file at path into cfg, which holds the defaults. Every
// unknown key and every value of the wrong kind is reported at once, each with its
// line and its path in the file, the whole error naming the file. An empty path
// leaves cfg as it is, and so does an empty file.
func LoadYAML(path string, cfg any) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := DecodeYAML(data, cfg); err != nil {
		return fmt.Errorf("%s:\n%w", path, err)
	}
	return nil
}

// plainTypes says what the decoder's Go types mean to whoever writes the file.
var plainTypes = strings.NewReplacer("into time.Duration", "into a duration (such as 500ms, 30s, 5m)",
	"into int64", "into a whole number", "into int", "into a whole number", "into uint64", "into a whole number",
	"into uint16", "into a whole number from 0 to 65535", "into uint32", "into a whole number",
	"into float64", "into a number", "into bool", "into true or false", "into []string", "into a list",
	"into string", "into a text")

// DecodeYAML decodes data into cfg, reporting every unknown key (CheckYAML), every
// reference that cannot be resolved (${VAR}, ${file:PATH}: see Resolve) and every
// value that does not fit its field, one per line.
func DecodeYAML(data []byte, cfg any) error {
	errs := CheckYAML(data, cfg)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if len(errs) == 0 {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	expand(&doc, "", &errs) // ${VAR} and ${file:PATH} references
	var te *yaml.TypeError
	if len(doc.Content) == 0 {
		return errors.Join(errs...)
	}
	if err := doc.Decode(cfg); errors.As(err, &te) {
		for _, e := range te.Errors {
			errs = append(errs, errors.New(plainTypes.Replace(e)))
		}
	} else if err != nil && !errors.Is(err, io.EOF) && len(errs) == 0 {
		errs = append(errs, err)
	}
	sort.SliceStable(errs, func(i, j int) bool { return LineOf(errs[i]) < LineOf(errs[j]) })
	return errors.Join(errs...)
}

// LineOf is the line an error from the YAML decoder names ("line 12: ..."), or 0.
func LineOf(err error) int {
	var n int
	fmt.Sscanf(err.Error(), "line %d:", &n)
	return n
}

// Serve serves h on ln until ctx ends, then shuts the server down, giving requests
// in flight up to 10 s.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// Every phase bounded: a client that sends slowly, or keeps a connection idle,
	// does not hold a connection for long.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
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
