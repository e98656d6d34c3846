package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	// Aliased: the command's function is called bench too.
	gwbench "github.com/sensorsreport/smsgw/services/devstack/bench"
)

// bench parses the flags of `devstack bench`, runs it, prints the table and
// writes the JSON; BENCH_QUICK=1 selects the short run CI uses.
func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	bin := fs.String("bin", "./bin", "directory holding sms-poller and sms-modem")
	out := fs.String("out", "bench/results", "directory for latest.json and its timestamped copies")
	_ = fs.Parse(args)
	rep, err := gwbench.Run(ctx, gwbench.Config{Bin: *bin, Out: *out, Quick: os.Getenv("BENCH_QUICK") == "1", Progress: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Println()
	if err := rep.Render(os.Stdout); err != nil {
		return err
	}
	path, err := rep.Write(*out)
	if err != nil {
		return err
	}
	fmt.Printf("Written to %s\n", path)
	return nil
}
