// Command takt-api serves Takt's HTTP API (see internal/server) and manages its
// bearer tokens.
//
//	takt-api [-c FILE] serve
//	takt-api [-c FILE] token create -tenant acme -name dashboard   (prints the token once)
//	takt-api [-c FILE] validate
//
// Configuration: a YAML file (see example.yaml) and the environment: DATABASE_URL,
// TAKT_READ_REPLICA_URLS (comma-separated) and TAKT_HTTP_ADDR override the file.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"takt.dev/api/internal/server"
	"takt.dev/servicekit"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-api:", err)
		os.Exit(1)
	}
}

// Config is takt-api's configuration file.
type Config struct {
	HTTPAddr        string   `yaml:"http_addr"`
	DatabaseURL     string   `yaml:"database_url"`
	ReadReplicaURLs []string `yaml:"read_replica_urls"`
}

func load(file string, getenv func(string) string) (*Config, error) {
	cfg := &Config{HTTPAddr: "127.0.0.1:8080"}
	if err := servicekit.LoadYAML(file, cfg); err != nil {
		return nil, err
	}
	if v := getenv("DATABASE_URL"); v != "" {
		cfg.DatabaseURL = v
	}
	if v := getenv("TAKT_READ_REPLICA_URLS"); v != "" {
		cfg.ReadReplicaURLs = strings.Split(v, ",")
	}
	if v := getenv("TAKT_HTTP_ADDR"); v != "" {
		cfg.HTTPAddr = v
	}
	if cfg.DatabaseURL == "" {
		return nil, errors.New("database_url: missing (or set DATABASE_URL)")
	}
	for i, u := range append([]string{cfg.DatabaseURL}, cfg.ReadReplicaURLs...) {
		if _, err := pgxpool.ParseConfig(u); err != nil {
			name := "database_url"
			if i > 0 {
				name = fmt.Sprintf("read_replica_urls[%d]", i-1)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return cfg, nil
}

// NewToken returns a new random token and the SHA-256 hash the database keeps.
func NewToken() (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = "takt_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, sum[:]
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("takt-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Arg(0)
	if cmd == "" {
		cmd = "serve"
	}
	cfg, err := load(*file, getenv)
	if err != nil {
		return err
	}
	switch cmd {
	case "validate":
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	case "token":
		return tokenCmd(ctx, cfg, fs.Args()[1:], stdout, stderr)
	case "serve":
	default:
		return fmt.Errorf("unknown command %q (want serve, token create or validate)", cmd)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	primary, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	defer primary.Close()
	var replicas []*pgxpool.Pool
	for _, u := range cfg.ReadReplicaURLs {
		p, err := pgxpool.New(ctx, u)
		if err != nil {
			return err
		}
		defer p.Close()
		replicas = append(replicas, p)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := server.New(server.Deps{Primary: primary, Replicas: replicas, Log: log, Registry: reg})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	log.Info("takt-api listening", "addr", ln.Addr().String())
	return servicekit.Serve(ctx, ln, h)
}

func tokenCmd(ctx context.Context, cfg *Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: takt-api token create -tenant TENANT -name NAME")
	}
	fs := flag.NewFlagSet("takt-api token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", "", "the tenant the token gives access to")
	name := fs.String("name", "", "what the token is for (shown in the audit log as token:NAME)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *tenant == "" || *name == "" {
		return errors.New("token create: -tenant and -name are required")
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	token, hash := NewToken()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant WHERE tenant_id = $1)`, *tenant).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("token create: tenant %q does not exist", *tenant)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO api_token (tenant_id, name, token_hash) VALUES ($1, $2, $3)`, *tenant, *name, hash); err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}
