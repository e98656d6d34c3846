// Package cli holds the subcommands both binaries share: version and
// healthcheck, and the signal-to-context plumbing their mains use.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sensorsreport/smsgw/shared/health"
)

// Version is stamped at build time with -ldflags "-X .../shared/cli.Version=...".
var Version = "dev"

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Healthcheck probes /healthz of the server configured by HTTP_ADDR (or def)
// and returns the process exit code: 0 healthy, 1 not. It is what the
// images' HEALTHCHECK runs, since they have no shell or curl.
func Healthcheck(w io.Writer, def string, path string) int {
	addr := os.Getenv("HTTP_ADDR")
	if addr == "" {
		addr = def
	}
	if err := health.Probe(addr, path, 3*time.Second); err != nil {
		fmt.Fprintln(w, "unhealthy:", err)
		return 1
	}
	fmt.Fprintln(w, "healthy")
	return 0
}
