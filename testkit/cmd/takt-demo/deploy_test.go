package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"takt.dev/testkit"
)

var deployDir = filepath.Join("..", "..", "..", "deploy")

// The example scrape configuration and the alert and recording rules are valid
// (promtool check config, check rules), every alert has
// a case in takt-rules.test.yml, and every case passes (promtool test rules).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: make test installs Debian's prometheus package with apt-get")
	}
	dir := filepath.Join(deployDir, "prometheus")
	for _, args := range [][]string{{"check", "config", "prometheus.yml"}, {"check", "rules", "takt-rules.yml"}, {"test", "rules", "takt-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert string }
		}
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	readYAML(t, filepath.Join(dir, "takt-rules.yml"), &rules)
	readYAML(t, filepath.Join(dir, "takt-rules.test.yml"), &tests)
	firing := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				n++
				if !firing[r.Alert] {
					t.Errorf("alert %s has no test case in which it fires", r.Alert)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("%d alerts read from takt-rules.yml", n)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// dashboard is what the tests read of a Grafana dashboard.
type dashboard struct {
	UID    string
	Panels []struct {
		Title   string
		Type    string
		Targets []struct {
			Expr   string
			RawSQL string `json:"rawSql"`
		}
	}
}

func readDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", name))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no uid or no panels", name)
	}
	return d
}

var metricName = regexp.MustCompile(`\btakt_[a-z0-9_]+`)

// namedMetrics returns every metric a dashboard or a rule names (recording rules'
// own names, takt:..., excepted: the rules make them).
func namedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	where := map[string][]string{}
	add := func(src, text string) {
		for _, m := range metricName.FindAllString(text, -1) {
			if !slices.Contains(where[m], src) {
				where[m] = append(where[m], src)
			}
		}
	}
	rules, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "takt-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	add("takt-rules.yml", string(rules))
	d := readDashboard(t, "takt-fleet.json")
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			add("takt-fleet.json: "+p.Title, tg.Expr)
		}
	}
	return where
}

// checkMetricsExist scrapes each /metrics URL and fails t for every metric a
// dashboard or rule names that no process exposes.
func checkMetricsExist(t *testing.T, urls ...string) {
	t.Helper()
	exposed := map[string]bool{}
	for _, u := range urls {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("scrape %s: %v", u, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
				line = name
			} else if strings.HasPrefix(line, "#") {
				continue
			}
			if m := metricName.FindString(line); m != "" && strings.HasPrefix(line, m) {
				exposed[m] = true
			}
		}
		resp.Body.Close()
	}
	if len(exposed) < 20 {
		t.Fatalf("only %d metrics scraped from %v", len(exposed), urls)
	}
	for m, where := range namedMetrics(t) {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !exposed[m] && !exposed[base] {
			t.Errorf("metric %s (named in %s) is exposed by no process", m, strings.Join(where, ", "))
		}
	}
}

// The plant dashboard's SQL runs as a member of takt_reader (migration 00021) with
// Grafana's macros expanded, and its OEE by line is the OEE from sums of two
// equipment's windows: (ideal run / planned) × (good / total).
func TestPlantDashboardQueries(t *testing.T) {
	ctx := context.Background()
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	testkit.RegisterLine(t, pool, "acme", "filler-1", "capper-1")
	_, err := pool.Exec(ctx, `
INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, ideal_run_s, total_count, good_count, scrap_count,
    breakdown_s, availability, performance, quality, oee) VALUES
  ('acme', 'filler-1', 'hour', '2026-11-25 06:00Z', '2026-11-25 07:00Z', 3600, 3000, 2700, 2700, 2673, 27, 600, 0.8333, 0.9, 0.99, 0.7425),
  ('acme', 'capper-1', 'hour', '2026-11-25 06:00Z', '2026-11-25 07:00Z', 3600, 3600, 3240, 3240, 3240, 0, 0, 1, 0.9, 1, 0.9)`)
	if err != nil {
		t.Fatal(err)
	}
	reader := db.Login(t, "IN ROLE takt_reader")
	expand := strings.NewReplacer("$tenant", "acme", "$granularity", "hour")
	timeFilter := regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)
	d := readDashboard(t, "takt-plant.json")
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			sql := timeFilter.ReplaceAllString(expand.Replace(tg.RawSQL), "$1 BETWEEN '2026-11-25T00:00:00Z' AND '2026-11-26T00:00:00Z'")
			rows, err := reader.Query(ctx, sql)
			if err != nil {
				t.Fatalf("panel %q: %v\n%s", p.Title, err, sql)
			}
			got, err := pgx.CollectRows(rows, pgx.RowToMap)
			if err != nil || len(got) == 0 {
				t.Fatalf("panel %q: %d rows, %v\n%s", p.Title, len(got), err, sql)
			}
			if p.Title == "OEE by line" {
				want := (2700.0 + 3240) / 7200 * (2673.0 + 3240) / (2700 + 3240)
				if v, _ := got[0]["value"].(float64); len(got) != 1 || math.Abs(v-want) > 1e-12 {
					t.Fatalf("OEE of line-1 at 06:00: %v, want %v from sums", got, want)
				}
			}
		}
	}
	// The reader reads no samples, tokens or audit log, and writes nothing.
	for _, sql := range []string{`SELECT count(*) FROM samples`, `SELECT count(*) FROM api_token`, `SELECT count(*) FROM audit_log`,
		`SELECT count(*) FROM maintenance_event`, `DELETE FROM oee_window`} {
		if _, err := reader.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("as takt_reader, %s: %v, want permission denied", sql, err)
		}
	}
}

// The database dashboard's SQL runs as a reporting login (a member of takt_reader
// and pg_read_all_stats, as docs/operations.md sets it up) once pg_stat_statements
// is loaded and created, and shows the statements that ran.
func TestDatabaseDashboardQueries(t *testing.T) {
	ctx := context.Background()
	db := testkit.NewDatabase(t)
	dba, err := pgx.Connect(ctx, db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer dba.Close(ctx)
	for _, sql := range []string{`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`, `SELECT count(*) FROM oee_window`} {
		if _, err := dba.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v (make test's PostgreSQL loads pg_stat_statements: shared_preload_libraries)", sql, err)
		}
	}
	reader := db.Login(t, "IN ROLE takt_reader, pg_read_all_stats")
	for _, p := range readDashboard(t, "takt-database.json").Panels {
		for _, tg := range p.Targets {
			rows, err := reader.Query(ctx, tg.RawSQL)
			if err != nil {
				t.Fatalf("panel %q: %v\n%s", p.Title, err, tg.RawSQL)
			}
			got, err := pgx.CollectRows(rows, pgx.RowToMap)
			if err != nil || len(got) == 0 {
				t.Fatalf("panel %q: %d rows, %v", p.Title, len(got), err)
			}
			if strings.Contains(p.Title, "pg_stat_statements") {
				var seen bool
				for _, r := range got {
					seen = seen || strings.Contains(fmt.Sprint(r["statement"]), "FROM oee_window")
				}
				if !seen {
					t.Fatalf("panel %q does not show the statement that ran: %v", p.Title, got)
				}
			}
		}
	}
}
