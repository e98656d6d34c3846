// Command devstack runs the gateway's stand-ins: `serve` for the Docker demo
// profile, `demo` for make demo, `bench` for make bench.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sensorsreport/smsgw/services/devstack/demo"
	"github.com/sensorsreport/smsgw/shared/cli"
)

const usage = `usage: devstack serve|demo|bench [flags]

  serve   serve the SMS API and OIDC stand-ins over HTTP and the modem simulator over TCP
  demo    run both services on the stand-ins and watch a handful of SMS flow (make demo)
  bench   measure the gateway (make bench)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(ctx, args)
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ExitOnError)
		bin := fs.String("bin", "./bin", "directory holding sms-poller and sms-modem")
		_ = fs.Parse(args)
		err = demo.Run(ctx, *bin, os.Stdout)
	case "bench":
		err = bench(ctx, args)
	case "version":
		cli.PrintVersion(os.Stdout, "devstack")
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}
