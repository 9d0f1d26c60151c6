package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"takt.dev/schemas"
)

// TestDeadLetterListAndReplay: envelopes from a gateway whose clock was half a year
// behind are refused (ts_out_of_window) beside a malformed message; the operator
// lists them, widens the window, and replays: they are stored once, a rerun skips
// them, and a forced rerun stores nothing twice. The malformed one is refused again.
func TestDeadLetterListAndReplay(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	a.incarnation = "r1"
	valid := a.envelopes(t, 1, 5, 10)
	var late []envelope
	for i := range 3 {
		e := schemas.Envelope{Version: 1, Tenant: "acme", Site: "lyon", Area: "pack", Line: "l1", Equipment: "filler-1", Agent: "gw1", Incarnation: "r1"}
		for j := range 10 {
			e.Samples = append(e.Samples, schemas.Sample{Seq: uint64(51 + i*10 + j), Tag: "t", Role: schemas.RoleMeasurement,
				TS: time.Now().UTC().AddDate(0, -6, 0), Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood})
		}
		b, err := schemas.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		late = append(late, envelope{topic: e.Path().Topic(), payload: b})
	}
	a.send(valid, 0)
	a.send(late, 0)
	a.send([]envelope{{topic: "takt/v1/acme/lyon/pack/l1/filler-1", payload: []byte("not json")}}, 0)
	p.waitRows(t, 50, 60*time.Second)
	waitIndexed := func(want int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var n int
			p.pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letter`).Scan(&n)
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d dead letters indexed, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitIndexed(4)

	cfgFile := filepath.Join(t.TempDir(), "ingest.yaml")
	if err := os.WriteFile(cfgFile, []byte("timestamps:\n  max_age: 8760h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TAKT_KAFKA_BROKERS": strings.Join(p.k.Brokers(), ","), "DATABASE_URL": p.db.URL}
	cli := func(args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"-c", cfgFile, "deadletter"}, args...), func(k string) string { return env[k] }, &out, &errOut); err != nil {
			t.Fatalf("deadletter %v: %v\n%s", args, err, errOut.String())
		}
		return out.String(), errOut.String()
	}

	out, _ := cli("list", "-reason", "ts_out_of_window", "-tenant", "acme", "-since", "1h")
	if n := strings.Count(out, "\n"+schemas.KafkaDeadLetter+"/"); n != 3 || !strings.Contains(out, "LETTER") {
		t.Fatalf("list shows %d ts_out_of_window letters, want 3:\n%s", n, out)
	}
	out, _ = cli("list", "-json")
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("list -json line %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 || lines[0]["payload_sha256"] == "" || lines[0]["tenant"] != "acme" {
		t.Fatalf("list -json: %d letters, first %v", len(lines), lines[0])
	}
	if out, _ := cli("list", "-until", "2000-01-01T00:00:00Z"); strings.Count(out, "\n") != 1 {
		t.Fatalf("-until 2000 selects letters:\n%s", out)
	}

	out, _ = cli("replay", "-dry-run")
	if !strings.Contains(out, "dry run") || !strings.Contains(out, "3 replayed (30 samples)") || !strings.Contains(out, "1 still refused (malformed)") {
		t.Fatalf("replay -dry-run: %s", out)
	}
	time.Sleep(time.Second)
	if n := p.rows(t); n != 50 {
		t.Fatalf("a dry run stored rows: %d", n)
	}
	out, _ = cli("replay", "-reason", "ts_out_of_window")
	if !strings.Contains(out, "3 letters matched: 3 replayed (30 samples)") {
		t.Fatalf("replay: %s", out)
	}
	p.waitRows(t, 80, 60*time.Second)
	out, _ = cli("replay", "-reason", "ts_out_of_window")
	if !strings.Contains(out, "0 replayed (0 samples), 3 already replayed") {
		t.Fatalf("rerun: %s", out)
	}
	out, _ = cli("replay", "-again")
	if !strings.Contains(out, "3 replayed (30 samples)") || !strings.Contains(out, "1 still refused (malformed)") {
		t.Fatalf("forced rerun: %s", out)
	}
	p.expectExactly(t, map[string]int{"gw1": 80})
	var marked int
	if err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letter WHERE replayed_at IS NOT NULL`).Scan(&marked); err != nil || marked != 3 {
		t.Fatalf("%d letters noted replayed (%v), want 3", marked, err)
	}
}
