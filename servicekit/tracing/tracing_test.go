package tracing

import (
	"context"
	"strings"
	"testing"
)

// Off unless an OTLP endpoint is given; OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none
// win over one; an exporter or protocol Takt does not speak is an error naming it.
func TestSetupFollowsTheStandardVariables(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		enabled bool
		err     string
	}{
		{map[string]string{}, false, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, false, `OTEL_TRACES_EXPORTER "zipkin": want otlp or none`},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "want http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, ""},
	} {
		stop, err := Setup(context.Background(), func(k string) string { return c.env[k] }, "takt-test", "0")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v, want %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if Enabled() != c.enabled {
			t.Errorf("%v: enabled %v", c.env, Enabled())
		}
		stop()
		if Enabled() {
			t.Errorf("%v: still enabled after stop", c.env)
		}
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := TraceParent(FromTraceParent(context.Background(), tp)); got != tp {
		t.Fatalf("round trip: %q", got)
	}
	for _, bad := range []string{"", "junk", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if got := TraceParent(FromTraceParent(context.Background(), bad)); got != "" {
			t.Errorf("%q gave a context %q", bad, got)
		}
	}
}
