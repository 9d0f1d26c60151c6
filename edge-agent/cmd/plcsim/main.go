// Command plcsim serves a simulated packaging line: one Modbus TCP server per
// machine, deterministic for a given seed (see internal/plcsim for the register map).
//
//	plcsim [-seed 1] [-machines 3] [-host 127.0.0.1] [-port 5020] [-speed 1]
//	       [-print-agent-config | -agent-config-file FILE] [-mqtt-url URL] [-buffer-dir DIR] [-tenant T]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"takt.dev/edge-agent/internal/plcsim"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "plcsim:", err)
		os.Exit(1)
	}
}

// loadScript reads a script: a JSON array of segments with durations as strings.
func loadScript(path string) ([]plcsim.Segment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		For, Cycle string
		State      uint16
		Reason     uint16
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("-script %s: %w", path, err)
	}
	out := make([]plcsim.Segment, len(raw))
	for i, r := range raw {
		d, err := time.ParseDuration(r.For)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-script %s: segment %d: for %q: want a positive duration", path, i, r.For)
		}
		var c time.Duration
		if r.Cycle != "" {
			if c, err = time.ParseDuration(r.Cycle); err != nil || c <= 0 {
				return nil, fmt.Errorf("-script %s: segment %d: cycle %q: want a positive duration", path, i, r.Cycle)
			}
		}
		out[i] = plcsim.Segment{For: d, State: r.State, Reason: r.Reason, Cycle: c}
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("plcsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same line")
	machines := fs.Int("machines", 3, "machines on the line (1..50)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 5020, "Modbus port of the first machine; the others follow (0: free ports)")
	speed := fs.Float64("speed", 1, "simulated seconds per real second (1..3600)")
	printCfg := fs.Bool("print-agent-config", false, "print a takt-agent configuration for this line")
	mqttURL := fs.String("mqtt-url", "tcp://127.0.0.1:1883", "broker URL written into the printed configuration")
	bufferDir := fs.String("buffer-dir", "/var/lib/takt-agent", "buffer directory written into the printed configuration")
	tenant := fs.String("tenant", "acme", "tenant written into the printed configuration")
	cfgFile := fs.String("agent-config-file", "", "write the takt-agent configuration to this file once serving")
	opcuaPort := fs.Int("opcua-port", -1, "also serve OPC UA on this port (0: a free port, -1: not at all)")
	scriptFile := fs.String("script", "", `a JSON script every machine follows instead of the random line: [{"for": "90m", "state": 1, "reason": 0, "cycle": "500ms"}, ...]`)
	startAt := fs.String("start", "", "simulated time at the start, RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *machines < 1 || *machines > 50 {
		return fmt.Errorf("-machines %d: want 1 to 50", *machines)
	}
	if *speed < 1 || *speed > 3600 {
		return fmt.Errorf("-speed %v: want 1 to 3600", *speed)
	}
	lcfg := plcsim.Config{Seed: *seed, Machines: *machines}
	if *startAt != "" {
		t, err := time.Parse(time.RFC3339, *startAt)
		if err != nil {
			return fmt.Errorf("-start %q: not an RFC 3339 time", *startAt)
		}
		lcfg.Start = t
	}
	if *scriptFile != "" {
		script, err := loadScript(*scriptFile)
		if err != nil {
			return err
		}
		lcfg.Script = script
	}
	line := plcsim.NewLine(lcfg)
	ports := make([]int, *machines)
	for i := range ports {
		if *port != 0 {
			ports[i] = *port + i
		}
	}
	srv, err := plcsim.ServeModbus(line, *host, ports)
	if err != nil {
		return err
	}
	defer srv.Stop()
	if *opcuaPort >= 0 {
		port := *opcuaPort
		if port == 0 {
			ln, err := net.Listen("tcp", net.JoinHostPort(*host, "0"))
			if err != nil {
				return err
			}
			port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		}
		ua, err := plcsim.ServeOPCUA(line, *host, port, 100*time.Millisecond)
		if err != nil {
			return err
		}
		defer ua.Stop()
		fmt.Fprintf(stderr, "plcsim: OPC UA on %s (namespace %s)\n", ua.Endpoint, plcsim.NamespaceURI)
	}
	names := make([]string, *machines)
	for i := range names {
		names[i] = line.Snapshot(i).Name
		fmt.Fprintf(stderr, "plcsim: %s on modbus tcp://%s\n", names[i], srv.Addrs[i])
	}
	if *printCfg {
		fmt.Fprint(stdout, plcsim.AgentConfig("gw-sim", *tenant, *mqttURL, *bufferDir, srv.Addrs, names, time.Second))
	}
	if *cfgFile != "" { // written whole, then renamed: a reader never sees half a file
		tmp := *cfgFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(plcsim.AgentConfig("gw-sim", *tenant, *mqttURL, *bufferDir, srv.Addrs, names, time.Second)), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *cfgFile); err != nil {
			return err
		}
	}
	const step = 100 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			line.Advance(time.Duration(float64(step) * *speed))
		}
	}
}
