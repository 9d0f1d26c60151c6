// Command takt-aggregator turns the events topic into OEE windows (hour, shift and
// day in each site's time zone) in PostgreSQL. Run several: they split the
// equipment by Kafka partition and share the recomputation.
//
//	takt-aggregator [-c FILE] run|validate
//
// Configuration: a YAML file (see example.yaml) and the environment: DATABASE_URL,
// TAKT_KAFKA_BROKERS (comma-separated) and TAKT_HTTP_ADDR override the file. The
// HTTP listener serves /metrics, /healthz and /readyz.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"takt.dev/aggregator/internal/service"
	"takt.dev/plant/store"
	"takt.dev/servicekit"
	"takt.dev/servicekit/buildinfo"
	"takt.dev/servicekit/kafkalink"
	"takt.dev/servicekit/poolstats"
	"takt.dev/servicekit/tracepgx"
	"takt.dev/servicekit/tracing"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-aggregator:", err)
		os.Exit(1)
	}
}

// Config is the aggregator's configuration file.
type Config struct {
	HTTPAddr    string `yaml:"http_addr"`
	DatabaseURL string `yaml:"database_url"`
	Kafka       struct {
		kafkalink.Link `yaml:",inline"` // brokers, tls, sasl
		Group          string           `yaml:"group"`
	} `yaml:"kafka"`
	BatchRecords   int           `yaml:"batch_records"`
	Linger         time.Duration `yaml:"linger"`
	RecomputeEvery time.Duration `yaml:"recompute_every"`
	RefreshEvery   time.Duration `yaml:"refresh_every"`
}

func load(file string, getenv func(string) string) (*Config, error) {
	cfg := &Config{HTTPAddr: "127.0.0.1:9104"}
	if err := servicekit.LoadYAML(file, cfg); err != nil {
		return nil, err
	}
	if v, err := servicekit.Env(getenv, "DATABASE_URL"); err != nil {
		return nil, err
	} else if v != "" {
		cfg.DatabaseURL = v
	}
	if v := getenv("TAKT_KAFKA_BROKERS"); v != "" {
		cfg.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := getenv("TAKT_HTTP_ADDR"); v != "" {
		cfg.HTTPAddr = v
	}
	switch {
	case cfg.DatabaseURL == "":
		return nil, errors.New("database_url: missing (or set DATABASE_URL)")
	case len(cfg.Kafka.Brokers) == 0:
		return nil, errors.New("kafka.brokers: missing (or set TAKT_KAFKA_BROKERS)")
	case cfg.Kafka.Validate() != nil:
		return nil, cfg.Kafka.Validate()
	case cfg.RefreshEvery != 0 && (cfg.RefreshEvery < time.Second || cfg.RefreshEvery > time.Hour):
		return nil, fmt.Errorf("refresh_every %s: want 1s to 1h (0: default 1m)", cfg.RefreshEvery)
	case cfg.BatchRecords < 0 || cfg.BatchRecords > 100_000:
		return nil, fmt.Errorf("batch_records %d: want 1 to 100000 (0: default 500)", cfg.BatchRecords)
	}
	if _, err := pgxpool.ParseConfig(cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("database_url: %w", err)
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-aggregator"))
		return nil
	}
	fs := flag.NewFlagSet("takt-aggregator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || (fs.Arg(0) != "run" && fs.Arg(0) != "validate" && fs.Arg(0) != "recompute") {
		return errors.New("usage: takt-aggregator [-c FILE] run|validate|recompute")
	}
	if fs.Arg(0) == "recompute" {
		return recomputeCmd(ctx, *file, fs.Args()[1:], getenv, stdout, stderr)
	}
	cfg, err := load(*file, getenv)
	if err != nil {
		return err
	}
	if fs.Arg(0) == "validate" {
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	}
	log, err := servicekit.Logger(getenv, stderr)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, getenv, "takt-aggregator", servicekit.Release)
	if err != nil {
		return err
	}
	defer stopTracing()
	pool, err := tracepgx.NewPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector("takt-aggregator"),
		poolstats.New(map[string]*pgxpool.Pool{"primary": pool}))
	ktls, ksasl, _ := cfg.Kafka.Parts() // checked by load
	svc, err := service.New(service.Config{KafkaBrokers: cfg.Kafka.Brokers, KafkaTLS: ktls, KafkaSASL: ksasl, TopicPrefix: cfg.Kafka.TopicPrefix,
		Group: cfg.Kafka.Group, BatchRecords: cfg.BatchRecords,
		Linger: cfg.Linger, RecomputeEvery: cfg.RecomputeEvery, RefreshEvery: cfg.RefreshEvery}, &store.Store{Pool: pool}, log, reg, time.Now)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	if _, err := servicekit.Profiling(mux, getenv); err != nil {
		return err
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(pctx); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return servicekit.Serve(gctx, ln, mux) })
	g.Go(func() error { return svc.Run(gctx) })
	log.Info("takt-aggregator running", "http", ln.Addr().String())
	return g.Wait()
}
