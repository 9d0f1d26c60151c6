// Command takt-ingest runs Takt's ingest stages: the MQTT → Kafka bridge, the
// Kafka → PostgreSQL sink, or both in one process.
//
//	takt-ingest [-c FILE] bridge|sink|all
//	takt-ingest [-c FILE] validate
//	takt-ingest [-c FILE] deadletter list|replay [-reason R] [-tenant T] [-since T] [-until T]
//
// Configuration comes from a YAML file (see example.yaml) and the environment:
// DATABASE_URL, TAKT_MQTT_URL, TAKT_KAFKA_BROKERS (comma-separated) and
// TAKT_HTTP_ADDR override the file. The HTTP listener serves /metrics, /healthz
// and /readyz.
package main

import (
	"context"
	"crypto/tls"
	"errors"
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
	"github.com/segmentio/kafka-go/sasl"
	"golang.org/x/sync/errgroup"

	"takt.dev/ingest/bridge"
	"takt.dev/ingest/sink"
	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/buildinfo"
	"takt.dev/servicekit/kafkalink"
	"takt.dev/servicekit/memlimit"
	"takt.dev/servicekit/poolstats"
	"takt.dev/servicekit/tracepgx"
	"takt.dev/servicekit/tracing"
)

func main() { main0(os.Args[1:]) }

func main0(args []string) {
	if err := run(context.Background(), args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-ingest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Config is the whole configuration of takt-ingest.
type Config struct {
	HTTPAddr    string `yaml:"http_addr"`
	DatabaseURL string `yaml:"database_url"`
	// MemoryLimit is the Go runtime's soft memory limit, bytes (GOMEMLIMIT wins):
	// 0, the default, max(100 MiB, 2 × bridge.queue_bytes + 64 MiB); -1, none.
	MemoryLimit int64 `yaml:"memory_limit"`
	Kafka       struct {
		kafkalink.Link `yaml:",inline"` // brokers, tls, sasl
		Compression    string           `yaml:"compression"`
	} `yaml:"kafka"`
	MaxMessageBytes int `yaml:"max_message_bytes"`
	DeadLetter      struct {
		MaxPayloadBytes int `yaml:"max_payload_bytes"`
	} `yaml:"dead_letter"`
	Timestamps struct {
		MaxAge   time.Duration `yaml:"max_age"`
		MaxAhead time.Duration `yaml:"max_ahead"`
	} `yaml:"timestamps"`
	Bridge struct {
		MQTTURL      string        `yaml:"mqtt_url"`
		ClientID     string        `yaml:"client_id"`
		Group        string        `yaml:"group"`
		Subscription string        `yaml:"subscription"`
		Topics       []string      `yaml:"topics"`
		Username     string        `yaml:"username"`
		Password     string        `yaml:"password"` // better: TAKT_MQTT_PASSWORD(_FILE) or ${...}
		CAFile       string        `yaml:"ca_file"`  // TLS (ssl://host:8883): the broker's authority (PEM)
		CertFile     string        `yaml:"cert_file"`
		KeyFile      string        `yaml:"key_file"`
		QueueSize    int           `yaml:"queue_size"`
		QueueBytes   int64         `yaml:"queue_bytes"`
		BatchSize    int           `yaml:"batch_size"`
		Linger       time.Duration `yaml:"linger"`
	} `yaml:"bridge"`
	Sink struct {
		Group           string        `yaml:"group"`
		BatchRows       int           `yaml:"batch_rows"`
		Linger          time.Duration `yaml:"linger"`
		FetchMaxBytes   int           `yaml:"fetch_max_bytes"`
		PrefetchRecords int           `yaml:"prefetch_records"`
		MaxCopies       int           `yaml:"max_concurrent_copies"`
	} `yaml:"sink"`
}

const usage = `usage: takt-ingest [-c FILE] bridge|sink|all|validate
       takt-ingest [-c FILE] deadletter list|replay [flags]`

func loadConfig(file string, getenv func(string) string) (*Config, error) {
	cfg := &Config{HTTPAddr: "127.0.0.1:9102"}
	if err := servicekit.LoadYAML(file, cfg); err != nil {
		return nil, err
	}
	// Secrets may come from the environment, or from files (NAME_FILE).
	for name, dst := range map[string]*string{"DATABASE_URL": &cfg.DatabaseURL, "TAKT_MQTT_URL": &cfg.Bridge.MQTTURL,
		"TAKT_MQTT_PASSWORD": &cfg.Bridge.Password} {
		v, err := servicekit.Env(getenv, name)
		if err != nil {
			return nil, err
		}
		if v != "" {
			*dst = v
		}
	}
	if v := getenv("TAKT_KAFKA_BROKERS"); v != "" {
		cfg.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := getenv("TAKT_HTTP_ADDR"); v != "" {
		cfg.HTTPAddr = v
	}
	if cfg.Timestamps.MaxAge < 0 || cfg.Timestamps.MaxAhead < 0 || cfg.Timestamps.MaxAge > 3660*24*time.Hour {
		return nil, fmt.Errorf("timestamps.max_age = %s, timestamps.max_ahead = %s: want 0 (the defaults %s, %s) or positive, max_age at most 3660 days",
			cfg.Timestamps.MaxAge, cfg.Timestamps.MaxAhead, schemas.DefaultMaxAge, schemas.DefaultMaxAhead)
	}
	if _, _, err := cfg.Kafka.Parts(); err != nil {
		return nil, err
	}
	queue := cfg.bridgeConfig().Defaults().QueueBytes
	switch ml := cfg.MemoryLimit; {
	case ml == 0:
		cfg.MemoryLimit = max(100<<20, 2*queue+64<<20)
	case ml == -1:
	case ml < 0:
		return nil, fmt.Errorf("memory_limit = %d: want bytes, 0 for the default or -1 for no limit", ml)
	case ml < queue+64<<20:
		return nil, fmt.Errorf("memory_limit = %d: below bridge.queue_bytes (%d) + 64 MiB, the collector would run without end; raise it, lower the queue, or -1 for no limit", ml, queue)
	}
	if err := kafkalink.CheckPrefix(cfg.Kafka.TopicPrefix); err != nil {
		return nil, err
	}
	if cfg.DeadLetter.MaxPayloadBytes < 0 {
		return nil, fmt.Errorf("dead_letter.max_payload_bytes = %d: want 1 or more (0 for the default %d)", cfg.DeadLetter.MaxPayloadBytes, schemas.DefaultDeadLetterPayload)
	}
	if cfg.MaxMessageBytes < 0 || cfg.MaxMessageBytes > 64<<20 {
		return nil, fmt.Errorf("max_message_bytes = %d: want 1 to %d (0 for the default %d)", cfg.MaxMessageBytes, 64<<20, schemas.DefaultLimits.MaxBytes)
	}
	return cfg, nil
}

// kafkaSecurity is the TLS configuration and SASL mechanism of the kafka: block.
func (c *Config) kafkaSecurity() (*tls.Config, sasl.Mechanism) {
	tc, m, _ := c.Kafka.Parts() // checked by loadConfig
	return tc, m
}

func (c *Config) limits() schemas.Limits {
	return schemas.Limits{MaxBytes: c.MaxMessageBytes, MaxAge: c.Timestamps.MaxAge, MaxAhead: c.Timestamps.MaxAhead}
}

func (c *Config) bridgeConfig() bridge.Config {
	ktls, ksasl := c.kafkaSecurity()
	return bridge.Config{
		BrokerURL: c.Bridge.MQTTURL, ClientID: c.Bridge.ClientID, Group: c.Bridge.Group,
		Subscription: c.Bridge.Subscription, Topics: c.Bridge.Topics,
		Username: c.Bridge.Username, Password: c.Bridge.Password,
		CAFile: c.Bridge.CAFile, CertFile: c.Bridge.CertFile, KeyFile: c.Bridge.KeyFile,
		KafkaBrokers: c.Kafka.Brokers, KafkaTLS: ktls, KafkaSASL: ksasl, TopicPrefix: c.Kafka.TopicPrefix, Compression: c.Kafka.Compression,
		QueueSize: c.Bridge.QueueSize, QueueBytes: c.Bridge.QueueBytes, BatchSize: c.Bridge.BatchSize, Linger: c.Bridge.Linger, Limits: c.limits(),
		DeadLetterPayload: c.DeadLetter.MaxPayloadBytes,
	}
}

func (c *Config) sinkConfig() sink.Config {
	ktls, ksasl := c.kafkaSecurity()
	return sink.Config{KafkaBrokers: c.Kafka.Brokers, KafkaTLS: ktls, KafkaSASL: ksasl, TopicPrefix: c.Kafka.TopicPrefix, Group: c.Sink.Group, BatchRows: c.Sink.BatchRows,
		Linger: c.Sink.Linger, FetchMaxBytes: c.Sink.FetchMaxBytes, QueueCapacity: c.Sink.PrefetchRecords,
		MaxCopies: c.Sink.MaxCopies, Limits: c.limits(), DeadLetterPayload: c.DeadLetter.MaxPayloadBytes}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-ingest"))
		return nil
	}
	fs := flagSet(stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() >= 1 && fs.Arg(0) == "deadletter" {
		cfg, err := loadConfig(*file, getenv)
		if err != nil {
			return err
		}
		return deadletterCmd(ctx, cfg, fs.Args()[1:], stdout, stderr)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, usage)
		return errors.New("want exactly one command")
	}
	mode := fs.Arg(0)
	cfg, err := loadConfig(*file, getenv)
	if err != nil {
		return err
	}
	runBridge, runSink := mode == "bridge" || mode == "all", mode == "sink" || mode == "all"
	validateOnly := mode == "validate"
	if validateOnly {
		runBridge, runSink = cfg.Bridge.MQTTURL != "", cfg.DatabaseURL != ""
	}
	if !runBridge && !runSink && !validateOnly {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", mode)
	}
	log, err := servicekit.Logger(getenv, stderr)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, getenv, "takt-ingest", servicekit.Release)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector("takt-ingest"))
	if !validateOnly {
		memlimit.Set(getenv, cfg.MemoryLimit, reg)
	}

	var b *bridge.Bridge
	var s *sink.Sink
	var pool *pgxpool.Pool
	if runBridge {
		if b, err = bridge.New(cfg.bridgeConfig(), log.With("stage", "bridge"), reg); err != nil {
			return err
		}
	}
	if runSink {
		if cfg.DatabaseURL == "" {
			return errors.New("database_url: missing (or set DATABASE_URL)")
		}
		pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("database_url: %w", err)
		}
		if validateOnly {
			if _, err := sink.New(cfg.sinkConfig(), nil, log, nil); err != nil {
				return err
			}
		} else {
			tracepgx.Instrument(pcfg.ConnConfig)
			if pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
				return fmt.Errorf("database_url: %w", err)
			}
			defer pool.Close()
			reg.MustRegister(poolstats.New(map[string]*pgxpool.Pool{"primary": pool}))
			if s, err = sink.New(cfg.sinkConfig(), pool, log.With("stage", "sink"), reg); err != nil {
				return err
			}
		}
	}
	if validateOnly {
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	}

	mux := http.NewServeMux()
	if _, err := servicekit.Profiling(mux, getenv); err != nil {
		return err
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var problems []string
		if b != nil && !b.Ready() {
			problems = append(problems, "bridge: not connected to the MQTT broker")
		}
		if pool != nil {
			pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := pool.Ping(pctx); err != nil {
				problems = append(problems, "sink: database: "+err.Error())
			}
		}
		if len(problems) > 0 {
			http.Error(w, strings.Join(problems, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	log.Info("takt-ingest running", "mode", mode, "http", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return servicekit.Serve(gctx, ln, mux) })
	if b != nil {
		g.Go(func() error { return b.Run(gctx) })
	}
	if s != nil {
		g.Go(func() error { return s.Run(gctx) })
	}
	return g.Wait()
}
