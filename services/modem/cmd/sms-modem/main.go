// Command sms-modem owns the modem's serial port: it pulls SMS jobs from the
// poller's broker, sends them with AT commands and reports the results.
package main

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/app"
	"github.com/sensorsreport/smsgw/shared/cli"
)

const usage = `usage: sms-modem [command]

  (none)               run the service
  diag                 initialise the modem and print what it is; exit 1 if it cannot send
  send NUMBER TEXT     send one SMS directly (no broker) and print each part's reference
  canary               send a canary SMS to CANARY_NUMBER (or MODEM_NUMBER), wait for it
                       to come back and print the round trip (stop the service first)
  healthcheck          exit 0 when the local /healthz answers (for Docker HEALTHCHECK)
  version              print the version

Configuration comes from the environment (MODEM_DEVICE, MODEM_PIN, NATS_URL, ...);
see README.md. CONFIG_FILE may name a legacy config.ini.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	case "version":
		fmt.Println(cli.Version)
		return 0
	case "healthcheck":
		return cli.Healthcheck(os.Stdout, ":8081", "/healthz")
	}
	var fn func(ctx context.Context, cfg app.Config, log *zap.Logger) error
	switch {
	case cmd == "":
		fn = app.Run
	case cmd == "diag":
		fn = func(ctx context.Context, cfg app.Config, log *zap.Logger) error {
			return app.Diag(ctx, cfg, log, os.Stdout)
		}
	case cmd == "canary" && len(args) == 1:
		fn = func(ctx context.Context, cfg app.Config, log *zap.Logger) error {
			return app.Canary(ctx, cfg, log, os.Stdout)
		}
	case cmd == "send" && len(args) == 3:
		fn = func(ctx context.Context, cfg app.Config, log *zap.Logger) error {
			return app.Send(ctx, cfg, log, os.Stdout, args[1], args[2])
		}
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	return cli.Run("sms-modem", fn)
}
