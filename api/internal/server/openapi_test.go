package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
)

// Every answer of the API, good and bad, is what the OpenAPI document it serves
// says, checked with an OpenAPI validator (pb33f/libopenapi-validator, OpenAPI 3.1).
func TestResponsesMatchTheOpenAPIDocument(t *testing.T) {
	pool := fixture(t)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, total_count, good_count, anomalies)
			VALUES ('a', 'filler-1', 'day', '2026-11-25T00:00:00Z', '2026-11-26T00:00:00Z', 0, 0, 0, 5, '{good_above_total}')`,
		`INSERT INTO oee_dirty (tenant_id, equipment, day, attempts, last_error) VALUES ('a', 'capper-1', '2026-11-24', 2, 'boom')`,
		`INSERT INTO downtime_reason (tenant_id, code, name, category) VALUES ('a', 101, 'Jam', 'breakdown')`,
		`INSERT INTO dead_letter (kafka_partition, kafka_offset, tenant_id, received_at, reason, error, source, payload_bytes, payload_sha256)
			VALUES (0, 7, 'a', '2026-11-25T08:00:00Z', 'invalid', 'samples[0].tag: control character', 'mqtt:takt/v1/a/lyon/pack/line-1/filler-1', 120, 'ab'),
			       (0, 8, 'b', '2026-11-25T08:00:00Z', 'invalid', 'other tenant', 'mqtt:takt/v1/b/x/y/z/w', 1, 'cd')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	_, ts := newServer(t, pool)
	resp, err := http.Get(ts.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	spec = bytes.Replace(spec, []byte(`"url": "/api/v1"`), []byte(`"url": "`+ts.URL+`/api/v1"`), 1)
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("openapi.json: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.json: %s: %s", e.Message, e.Reason)
		}
		t.FailNow()
	}
	day := "from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z"
	hours := "from=" + h6.Format(time.RFC3339) + "&to=" + h6.Add(2*time.Hour).Format(time.RFC3339)
	for _, c := range []struct {
		method, path, token, body string
		status                    int
	}{
		{"GET", "/equipment", "tok-a", "", 200},
		{"GET", "/equipment/filler-1", "tok-a", "", 200},
		{"GET", "/equipment/nope", "tok-a", "", 404},
		{"GET", "/equipment", "", "", 401},
		{"GET", "/equipment", "tok-nobody", "", 401},
		{"PATCH", "/equipment/filler-1", "tok-a", `{"ideal_cycle_time_s": 0.9}`, 200},
		{"PATCH", "/equipment/filler-1", "tok-a", `{"ideal_cycle_time_s": -1}`, 400},
		{"GET", "/equipment/filler-1/oee?bucket=hour&" + hours, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/oee?bucket=day&" + day, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/oee?bucket=week&" + day, "tok-a", "", 400},
		{"GET", "/lines/line-1/oee?bucket=hour&" + hours, "tok-a", "", 200},
		{"GET", "/sites/lyon/oee?bucket=hour&" + hours, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/timeline?" + hours, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/downtime?" + hours, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/counts?bucket=hour&" + hours, "tok-a", "", 200},
		{"GET", "/equipment/filler-1/downtime-events?" + day, "tok-a", "", 200},
		{"GET", "/sites", "tok-a", "", 200},
		{"POST", "/sites", "tok-a", `{"code":"turin","name":"Turin","time_zone":"Europe/Rome"}`, 201},
		{"POST", "/sites", "tok-a", `{"code":"mars","name":"Mars","time_zone":"Mars/Olympus"}`, 400},
		{"PATCH", "/sites/turin", "tok-a", `{"name":"Torino"}`, 200},
		{"GET", "/sites/lyon/shifts", "tok-a", "", 200},
		{"POST", "/sites/lyon/shifts", "tok-a", `{"name":"early","starts_at":"06:00","duration":"08:00:00","breaks":[{"name":"lunch","offset":"04:00:00","duration":"00:30:00"}]}`, 201},
		{"PATCH", "/sites/lyon/shifts/1", "tok-a", `{"valid_to":"2026-12-31"}`, 200},
		{"GET", "/lines", "tok-a", "", 200},
		{"POST", "/lines", "tok-a", `{"site":"turin","area":"pack","code":"line-9","name":"L9"}`, 201},
		{"GET", "/products", "tok-a", "", 200},
		{"POST", "/products", "tok-a", `{"code":"cola","name":"Cola","ideal_cycle_time_s":0.5}`, 201},
		{"POST", "/equipment", "tok-a", `{"code":"labeler-1","name":"Labeler","line":"line-9"}`, 201},
		{"GET", "/equipment/filler-1/planned-stops", "tok-a", "", 200},
		{"POST", "/equipment/filler-1/planned-stops", "tok-a", `{"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:30:00Z","reason":"cleaning"}`, 201},
		{"GET", "/equipment/filler-1/runs?" + day, "tok-a", "", 200},
		{"POST", "/equipment/filler-1/runs", "tok-a", `{"product":"cola","start":"2026-11-25T06:00:00Z","end":"2026-11-25T09:00:00Z"}`, 201},
		{"POST", "/equipment/filler-1/runs", "tok-a", `{"product":"cola","start":"2026-11-25T07:00:00Z"}`, 409},
		{"POST", "/equipment/filler-1/runs", "tok-a", `{"product":"cola","start":"2026-11-25T10:00:00Z"}`, 201},
		{"PATCH", "/equipment/filler-1/runs/2", "tok-a", `{"end":"2026-11-25T12:00:00Z"}`, 200},
		{"PATCH", "/equipment/filler-1/runs/2", "tok-a", `{"end":"2026-11-25T08:00:00Z"}`, 400},
		{"PATCH", "/equipment/filler-1/runs/2", "tok-a", `{"start":"2026-11-25T08:00:00Z"}`, 409},
		{"GET", "/reasons", "tok-a", "", 200},
		{"POST", "/reasons", "tok-a", `{"code":102,"name":"Starved","category":"idle"}`, 201},
		{"PATCH", "/reasons/102", "tok-a", `{"name":"Starved by the filler","category":"idle"}`, 200},
		{"GET", "/equipment/filler-1/maintenance?" + day, "tok-a", "", 200},
		{"POST", "/equipment/filler-1/maintenance", "tok-a", `{"kind":"inspection","start":"2026-11-25T12:00:00Z","description":"weekly"}`, 201},
		{"PATCH", "/equipment/filler-1/maintenance/1", "tok-a", `{"kind":"inspection","start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:30:00Z","description":"weekly, done"}`, 200},
		{"DELETE", "/equipment/filler-1/maintenance/1", "tok-a", "", 200},
		{"DELETE", "/equipment/filler-1/maintenance/1", "tok-a", "", 404},
		{"GET", "/recompute-failures", "tok-a", "", 200},
		{"GET", "/dead-letters?" + day, "tok-a", "", 200},
		{"PATCH", "/lines/line-9", "tok-a", `{"name":"Line nine"}`, 200},
		{"PATCH", "/products/cola", "tok-a", `{"ideal_cycle_time_s":0.6}`, 200},
		{"DELETE", "/products/cola", "tok-a", "", 409},
		{"PATCH", "/equipment/filler-1/planned-stops/1", "tok-a", `{"reason":"deep cleaning"}`, 200},
		{"DELETE", "/equipment/filler-1/planned-stops/1", "tok-a", "", 200},
		{"DELETE", "/equipment/labeler-1", "tok-a", "", 200},
		{"DELETE", "/lines/line-9", "tok-a", "", 200},
		{"DELETE", "/sites/turin", "tok-a", "", 200},
		{"GET", "/lines/line-1/oee?site=lyon&bucket=hour&" + hours, "tok-a", "", 200},
		// Scopes: read reads, manage changes, admin also sees and revokes tokens.
		{"GET", "/equipment/filler-1/oee?bucket=day&" + day, "tok-read", "", 200},
		{"POST", "/sites", "tok-read", `{"code":"oslo","name":"Oslo","time_zone":"Europe/Oslo"}`, 403},
		{"POST", "/sites", "tok-manage", `{"code":"oslo","name":"Oslo","time_zone":"Europe/Oslo"}`, 201},
		{"GET", "/tokens", "tok-manage", "", 403},
		{"GET", "/tokens", "tok-a", "", 200},
		{"GET", "/equipment", "tok-expired", "", 401},
		{"DELETE", "/tokens/3", "tok-a", "", 200},
		{"GET", "/equipment", "tok-read", "", 401},
		{"DELETE", "/tokens/2", "tok-a", "", 404}, // tenant b's
		{"DELETE", "/tokens/x", "tok-a", "", 400},
	} {
		t.Run(c.method+" "+strings.SplitN(c.path, "?", 2)[0], func(t *testing.T) {
			req, _ := http.NewRequest(c.method, ts.URL+"/api/v1"+c.path, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			req.Body = io.NopCloser(strings.NewReader(c.body))
			if ok, verrs := v.ValidateHttpResponse(req, resp); !ok {
				for _, e := range verrs {
					msg := fmt.Sprintf("%s: %s", e.Message, e.Reason)
					for _, se := range e.SchemaValidationErrors {
						msg += fmt.Sprintf("\n  %s: %s", se.FieldPath, se.Reason)
					}
					t.Error(msg)
				}
				t.Logf("body: %.600s", body)
			}
		})
	}
	if actors := auditActors(t, pool, `tenant_id = 'a' AND entity = 'api_token' AND entity_id = '3'
		AND after->>'revoked_at' IS NOT NULL AND NOT after ? 'token_hash'`); len(actors) != 1 || actors[0] != "token:test-a" {
		t.Fatalf("the revocation is audited by %q, want once by token:test-a, without the hash", actors)
	}
}

// Every operation has an operationId, tags, a 401 and a schema for what it answers,
// so that generated clients and the validator above have something to hold on to.
func TestOpenAPIOperationsAreComplete(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string   `json:"operationId"`
			Tags        []string `json:"tags"`
			RequestBody any      `json:"requestBody"`
			Responses   map[string]struct {
				Content map[string]any `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			name := method + " " + path
			if op.OperationID == "" || ids[op.OperationID] || len(op.Tags) == 0 {
				t.Errorf("%s: operationId %q (unique?), tags %v", name, op.OperationID, op.Tags)
			}
			ids[op.OperationID] = true
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s: no 401", name)
			}
			if _, ok := op.Responses["429"]; !ok {
				t.Errorf("%s: no 429 (every call is rate limited)", name)
			}
			if _, ok := op.Responses["413"]; !ok && op.RequestBody != nil {
				t.Errorf("%s: no 413 (a body has a bound)", name)
			}
			for status, r := range op.Responses {
				if r.Content == nil {
					t.Errorf("%s %s: no schema", name, status)
				}
			}
		}
	}
}
