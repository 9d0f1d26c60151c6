// Command takt-agent is Takt's edge agent for a line gateway.
//
//	takt-agent run -c /etc/takt-agent/agent.yaml
//	takt-agent validate -c agent.yaml     (checks the file, connects to nothing)
//
// See edge-agent/README.md for the configuration file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"takt.dev/edge-agent/internal/agent"
	"takt.dev/edge-agent/internal/config"
	"takt.dev/servicekit"
	"takt.dev/servicekit/tracing"
)

func main() { main0(os.Args[1:]) }

func main0(args []string) {
	if err := run(context.Background(), args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-agent:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

const usage = "usage: takt-agent run|validate -c FILE"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-agent"))
		return nil
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("takt-agent "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "/etc/takt-agent/agent.yaml", "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch cmd {
	case "validate", "run":
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return fmt.Errorf("%s:\n%w", *file, err)
	}
	if cmd == "validate" {
		tags := 0
		for _, e := range cfg.Equipment {
			for _, src := range e.Sources {
				tags += len(src.SourceTags())
			}
		}
		fmt.Fprintf(stdout, "%s is valid: agent %s, %d equipment, %d tags\n", *file, cfg.Agent.ID, len(cfg.Equipment), tags)
		return nil
	}
	log, err := servicekit.Logger(os.Getenv, stderr)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, os.Getenv, "takt-agent", servicekit.Release)
	if err != nil {
		return err
	}
	defer stopTracing()
	return agent.Run(ctx, cfg, agent.Options{Log: log})
}
