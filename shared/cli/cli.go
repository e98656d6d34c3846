// Package cli holds what both binaries' command lines share: version,
// help with the settings, healthcheck, and Run and Tool, which load the
// configuration, build the logger and map errors to exit codes.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/health"
	"github.com/sensorsreport/smsgw/shared/logging"
)

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
// logger and runs the service fn with a context that SIGINT and SIGTERM
// cancel. It returns the process exit code: 2 for unusable configuration
// (found while loading or reported by fn as a *config.Error, printed as
// one plain line), 1 when fn failed other than by being stopped (logged
// once, as a structured line, and not printed again), 0 otherwise.
func Run[T Logged](name string, fn func(ctx context.Context, cfg T, log *zap.Logger) error) int {
	cfg, code := load[T](name)
	if code != 0 {
		return code
	}
	log, err := logging.New(cfg.Logging())
	if err != nil {
		return configFailed(name, err)
	}
	defer logging.Sync(log)
	ctx, stop := SignalContext()
	defer stop()
	err = fn(ctx, cfg, log)
	switch {
	case err == nil || ctx.Err() != nil:
		return 0
	case config.IsConfig(err):
		return configFailed(name, err)
	default:
		log.Error(name+" failed", zap.Error(err))
		return 1
	}
}

// Tool runs an operator command: like Run, but the logger writes
// human-readable lines and only errors (everything at LOG_LEVEL=debug), so
// stdout stays the command's own output, and a failure is printed once as
// "name: error" on stderr. fn returns the exit code it wants when it
// succeeds in running (check and sms send exit 1 on a bad outcome).
func Tool[T Logged](name string, fn func(ctx context.Context, cfg T, log *zap.Logger) (int, error)) int {
	cfg, code := load[T](name)
	if code != 0 {
		return code
	}
	level, _ := cfg.Logging()
	if !strings.EqualFold(strings.TrimSpace(level), "debug") {
		level = "error"
	}
	log, err := logging.New(level, "console")
	if err != nil {
		return configFailed(name, err)
	}
	defer logging.Sync(log)
	ctx, stop := SignalContext()
	defer stop()
	code, err = fn(ctx, cfg, log)
	switch {
	case err == nil:
		return code
	case config.IsConfig(err):
		return configFailed(name, err)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return max(code, 1)
	}
}

// Load reads T like Run does and reports a configuration error (printed
// once, exit code 2) the same way. Commands that must say more than
// Run and Tool allow, such as check, use it directly.
func Load[T any](name string) (T, int) { return load[T](name) }

func load[T any](name string) (T, int) {
	cfg, err := config.Load[T]()
	if err != nil {
		return cfg, configFailed(name, err)
	}
	return cfg, 0
}

// configFailed prints a configuration error on one line and returns 2.
func configFailed(name string, err error) int {
	fmt.Fprintf(os.Stderr, "%s: configuration: %v\n", name, err)
	return 2
}
