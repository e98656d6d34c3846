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

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/health"
	"github.com/sensorsreport/smsgw/shared/logging"
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

// Logged is a service configuration that says how to log.
type Logged interface{ Logging() (level, format string) }

// Run loads T from the environment (and a legacy CONFIG_FILE), builds the
// logger and calls fn with a context that SIGINT and SIGTERM cancel. It
// returns the process exit code: 2 for unusable configuration, 1 when fn
// failed other than by being stopped, 0 otherwise.
func Run[T Logged](name string, fn func(ctx context.Context, cfg T, log *zap.Logger) error) int {
	cfg, err := config.Load[T]()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	level, format := cfg.Logging()
	var file logging.File // LOG_FILE, for configurations that embed logging.File
	if f, ok := any(cfg).(interface{ LogFile() logging.File }); ok {
		file = f.LogFile()
	}
	log, closeLog, err := logging.Open(level, format, file, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer closeLog()
	ctx, stop := SignalContext()
	defer stop()
	if err := fn(ctx, cfg, log); err != nil && ctx.Err() == nil {
		log.Error(name+" failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
