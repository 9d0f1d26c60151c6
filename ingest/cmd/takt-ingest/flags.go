package main

import (
	"flag"
	"io"
)

func flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("takt-ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
