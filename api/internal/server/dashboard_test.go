package server

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDashboardShowsTheAPIFigures drives the dashboard in headless Chromium (Debian's
// chromium, installed by make test) and checks that the OEE it shows for the line
// and each equipment is the API's, to the last digit.
func TestDashboardShowsTheAPIFigures(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: make test installs Debian's chromium with apt-get")
	}
	pool := fixture(t)
	// Windows in the last day, whenever the test runs.
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	if _, err := pool.Exec(context.Background(), `UPDATE oee_window SET starts_at = starts_at - $1::timestamptz + $2::timestamptz,
		ends_at = ends_at - $1::timestamptz + $2::timestamptz`, h6, base); err != nil {
		t.Fatal(err)
	}
	// The states too, and a name for the stop's reason code.
	if _, err := pool.Exec(context.Background(), `UPDATE state_observation SET ts = ts - $1::timestamptz + $2::timestamptz`, h6, base); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO downtime_reason (tenant_id, code, name) VALUES ('a', 101, 'Jam at the infeed')`); err != nil {
		t.Fatal(err)
	}
	// capper-1's first hour has half its scheduled time without data.
	if _, err := pool.Exec(context.Background(), `UPDATE oee_window SET scheduled_s = 3600, unknown_s = 1800, coverage = 0.5
		WHERE tenant_id = 'a' AND equipment = 'capper-1'`); err != nil {
		t.Fatal(err)
	}
	_, ts := newServer(t, pool)

	out, err := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=20000", "--dump-dom", ts.URL+"/#token=tok-a").Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	if !regexp.MustCompile(`data-ready="1"`).MatchString(dom) {
		os.WriteFile(t.TempDir()+"/dom.html", out, 0o644)
		t.Fatalf("the dashboard did not finish loading:\n%.2000s", dom)
	}
	value := func(re string) float64 {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("not on the page: %s", re)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatalf("%s: %q", re, m[1])
		}
		return v
	}

	to := time.Now().UTC().Truncate(time.Hour)
	if !to.Equal(time.Now().UTC()) {
		to = to.Add(time.Hour)
	}
	from := to.Add(-24 * time.Hour)
	q := fmt.Sprintf("?bucket=hour&from=%s&to=%s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	var line OEEResponse
	if code := call(t, ts, "GET", "tok-a", "/api/v1/lines/line-1/oee"+q, "", &line); code != 200 || line.Total.OEE == nil {
		t.Fatalf("API: %d %+v", code, line.Total)
	}
	same := func(name string, page float64, api *float64) {
		t.Helper()
		if api == nil || math.Abs(page-*api) > 1e-12 {
			t.Errorf("%s: the page shows %v, the API says %v", name, page, api)
		}
	}
	same("line OEE", value(`id="line-oee"[^>]*data-value="([^"]+)"`), line.Total.OEE)
	same("line availability", value(`id="line-a"[^>]*data-value="([^"]+)"`), line.Total.Availability)
	same("line performance", value(`id="line-p"[^>]*data-value="([^"]+)"`), line.Total.Performance)
	same("line quality", value(`id="line-q"[^>]*data-value="([^"]+)"`), line.Total.Quality)
	same("line coverage", value(`id="line-coverage"[^>]*data-value="([^"]+)"`), line.Total.Coverage)
	if !line.Total.Partial || !regexp.MustCompile(`class="kpi partial"[^>]*id="line-coverage-kpi"|id="line-coverage-kpi"[^>]*class="kpi partial"`).MatchString(dom) {
		t.Errorf("partial data not marked: API partial=%v", line.Total.Partial)
	}
	if !regexp.MustCompile(`data-testid="reason" data-code="101">Jam at the infeed<`).MatchString(dom) {
		t.Errorf("the Pareto does not name reason 101")
	}
	partialRows := 0
	for _, b := range line.Buckets {
		if b.Partial {
			partialRows++
		}
	}
	if n := len(regexp.MustCompile(`data-partial="1"`).FindAllString(dom, -1)); n != partialRows || n == 0 {
		t.Errorf("%d hour rows marked partial on the page, the API has %d", n, partialRows)
	}
	for _, eq := range []string{"filler-1", "capper-1"} {
		var r OEEResponse
		call(t, ts, "GET", "tok-a", "/api/v1/equipment/"+eq+"/oee"+q, "", &r)
		same(eq+" OEE", value(`data-equipment="`+eq+`">[\s\S]*?data-testid="eq-oee" data-value="([^"]+)"`), r.Total.OEE)
	}
	if n := len(regexp.MustCompile(`<tr data-start="[0-9]`).FindAllString(dom, -1)); n != len(line.Buckets) || n < 2 {
		t.Errorf("%d hour rows on the page, want %d (the API's buckets)", n, len(line.Buckets))
	}
}
