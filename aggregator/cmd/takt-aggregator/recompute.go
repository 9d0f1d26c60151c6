package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"takt.dev/plant/store"
	"takt.dev/servicekit"
)

// recomputeCmd recomputes the windows of every equipment-day in a scope and a range
// of UTC days, now, with progress on stderr (done/total, rate, time left) and, with
// -metrics-addr, in takt_aggregator_recompute_{done,total}_days.
func recomputeCmd(ctx context.Context, file string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("takt-aggregator recompute", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sc store.Scope
	fs.StringVar(&sc.Tenant, "tenant", "", "only this tenant")
	fs.StringVar(&sc.Site, "site", "", "only this site (code)")
	fs.StringVar(&sc.Line, "line", "", "only this line (code; with -site to pick one of several sites)")
	fs.StringVar(&sc.Equipment, "equipment", "", "only this equipment (code)")
	fromS := fs.String("from", "", "first UTC day, YYYY-MM-DD (required)")
	toS := fs.String("to", "", "last UTC day, YYYY-MM-DD (default: today)")
	every := fs.Duration("progress", time.Second, "how often progress is printed")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics with the progress here while running")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("recompute: unexpected argument %q", fs.Arg(0))
	}
	from, err := time.Parse(time.DateOnly, *fromS)
	if err != nil {
		return fmt.Errorf("recompute -from %q: want a date YYYY-MM-DD", *fromS)
	}
	to := time.Now().UTC().Truncate(24 * time.Hour)
	if *toS != "" {
		if to, err = time.Parse(time.DateOnly, *toS); err != nil {
			return fmt.Errorf("recompute -to %q: want a date YYYY-MM-DD", *toS)
		}
	}
	if to.Before(from) {
		return fmt.Errorf("recompute -to %s: before -from %s", *toS, *fromS)
	}
	if to.Sub(from) > store.MaxCarryDays*24*time.Hour {
		return fmt.Errorf("recompute -from %s -to %s: more than %d days; split the range", *fromS, *toS, store.MaxCarryDays)
	}
	url, err := servicekit.Env(getenv, "DATABASE_URL")
	if err != nil {
		return err
	}
	if file != "" {
		var cfg Config
		if err := servicekit.LoadYAML(file, &cfg); err != nil {
			return err
		}
		if url == "" {
			url = cfg.DatabaseURL
		}
	}
	if url == "" {
		return errors.New("database_url: missing (or set DATABASE_URL)")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	defer pool.Close()

	reg := prometheus.NewRegistry()
	done := prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_recompute_done_days", Help: "Equipment-days recomputed by the running recompute command."})
	total := prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_recompute_total_days", Help: "Equipment-days the running recompute command has to do."})
	failed := prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_recompute_failed_days", Help: "Equipment-days the running recompute command could not compute."})
	reg.MustRegister(done, total, failed)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("recompute -metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go servicekit.Serve(sctx, ln, mux)
	}

	days, err := store.Days(ctx, pool, sc, from, to)
	if err != nil {
		return err
	}
	total.Set(float64(len(days)))
	st := &store.Store{Pool: pool}
	start, last := time.Now(), time.Now()
	var nfailed int
	progress := func(i int) {
		el := time.Since(start).Seconds()
		rate := float64(i) / max(el, 1e-9)
		left := time.Duration(0)
		if rate > 0 {
			left = time.Duration(float64(len(days)-i) / rate * float64(time.Second)).Round(time.Second)
		}
		fmt.Fprintf(stderr, "recompute: %d/%d equipment-days (%.1f%%), %.1f days/s, %s left, %d failed\n",
			i, len(days), 100*float64(i)/float64(max(len(days), 1)), rate, left, nfailed)
	}
	for i, d := range days {
		if err := ctx.Err(); err != nil {
			progress(i)
			return err
		}
		if err := st.Compute(ctx, d, time.Now()); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			nfailed++
			failed.Inc()
			fmt.Fprintf(stderr, "recompute: %s: %v\n", d, err)
		}
		done.Inc()
		if time.Since(last) >= *every {
			progress(i + 1)
			last = time.Now()
		}
	}
	progress(len(days))
	el := time.Since(start)
	fmt.Fprintf(stdout, "recomputed %d equipment-days in %s (%.1f days/s), %d failed\n", len(days)-nfailed, el.Round(time.Millisecond),
		float64(len(days))/max(el.Seconds(), 1e-9), nfailed)
	if nfailed > 0 {
		return fmt.Errorf("%d equipment-days failed (listed above)", nfailed)
	}
	return nil
}
