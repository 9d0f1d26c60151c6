// Command plcsim serves a simulated packaging line: one Modbus TCP server per
// machine, deterministic for a given seed (see internal/plcsim for the register map).
//
//	plcsim [-seed 1] [-machines 3] [-host 127.0.0.1] [-port 5020] [-speed 1]
//	       [-print-agent-config | -agent-config-file FILE] [-mqtt-url URL] [-buffer-dir DIR] [-tenant T]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *machines < 1 || *machines > 50 {
		return fmt.Errorf("-machines %d: want 1 to 50", *machines)
	}
	if *speed < 1 || *speed > 3600 {
		return fmt.Errorf("-speed %v: want 1 to 3600", *speed)
	}
	line := plcsim.NewLine(plcsim.Config{Seed: *seed, Machines: *machines})
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
