package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestCommands(t *testing.T) {
	d := testkit.NewEmptyDatabase(t)
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return d.URL
		}
		return ""
	}
	cmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, env, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	steps := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"status"}, "pending", ""},
		{[]string{"up"}, "applied 00016_token_scopes.sql", ""},
		{[]string{"up"}, "up to date", ""},
		{[]string{"status"}, "applied 20", ""},
		{[]string{"partitions", "-ahead", "3"}, "created 3 partition(s)", ""},
		{[]string{"partitions", "-ahead", "3", "-retention", "30"}, "created 0 partition(s)", ""},
		{[]string{"down"}, "rolled back 00016_token_scopes.sql", ""},
		{[]string{"partitions", "-ahead", "0"}, "", "-ahead 0: want 1 to 3660"},
		{[]string{"sideways"}, "", `unknown command "sideways"`},
		{nil, "", "no command given"},
		{[]string{"up", "extra"}, "", `unexpected arguments`},
	}
	for _, s := range steps {
		out, err := cmd(s.args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("takt-migrate %v: err = %v, want %q", s.args, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("takt-migrate %v: %v\n%s", s.args, err, out)
		}
		if !strings.Contains(out, s.want) {
			t.Fatalf("takt-migrate %v printed:\n%s\nwant it to contain %q", s.args, out, s.want)
		}
	}
	if err := run(context.Background(), []string{"status"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("without DATABASE_URL: %v", err)
	}
}
