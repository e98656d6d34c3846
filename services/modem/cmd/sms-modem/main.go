// Command sms-modem owns the modem's serial port: it pulls SMS jobs from the
// poller's broker, sends them with AT commands and reports the results.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/app"
	"github.com/sensorsreport/smsgw/shared/cli"
)

const name = "sms-modem"

const commands = `  (none)               run the service
  diag                 initialise the modem and print what it is; exit 1 if it cannot send
  send NUMBER TEXT     send one SMS directly (no broker) and print each part's reference
  ledger [--unknown] [--json]
                       list recent sends from the ledger, or only those whose outcome is unknown
  canary               send a canary SMS and print its round trip (stop the service first)
  healthcheck          exit 0 when the local /healthz answers (for Docker HEALTHCHECK)
  version              print version, commit, build date, Go version and platform
  help [CMD]           this text, or one command's
`

var help = map[string]string{
	"diag": `usage: sms-modem diag

Opens MODEM_DEVICE (stop the service first: only one program may use the
port), initialises the modem and prints maker, model, IMEI, SIM, operator,
signal and registration. Exit 0 when it can send, 1 when not (with the
reason), 2 when a setting is wrong (MODEM_DEVICE missing, MODEM_PIN refused).
`,
	"send": `usage: sms-modem send NUMBER TEXT

Sends one SMS directly, without the broker or the API, and prints each
part's message reference. National numbers are read for MODEM_COUNTRY.
`,
	"canary": `usage: sms-modem canary

Opens MODEM_DEVICE (stop the service first), sends a short SMS with a nonce
to CANARY_NUMBER (default MODEM_NUMBER), waits up to CANARY_TIMEOUT for it
to come back and prints the round trip. Only the canary is taken off the
SIM; other messages stay for the service. Exit 1 when it does not come back.
`,
	"ledger": `usage: sms-modem ledger [--unknown] [--json]

Lists the sends recorded in MODEM_DATA_DIR/ledger, newest first: time, SMS
id, tenant, state (attempting or done), status, the message references of
its parts (the TrackingId reported upstream) and the reason. --unknown
keeps only the sends whose outcome nobody knows (interrupted while sending,
or reported Unknown): check those with the recipient by hand. --json prints
the same rows as JSON objects. Phone numbers are masked. Safe to run while
the service runs.
`,
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "help":
		if len(args) > 1 && help[args[1]] != "" {
			fmt.Print(help[args[1]])
			fmt.Println()
		}
		cli.Usage[app.Config](os.Stdout, name, commands)
		return 0
	case "version":
		cli.PrintVersion(os.Stdout, name)
		return 0
	case "healthcheck":
		return cli.Healthcheck(os.Stdout, ":8081", "/healthz")
	case "":
		return cli.Run(name, app.Run)
	case "diag":
		if len(args) != 1 {
			return usage(os.Stderr, cmd, "diag takes no arguments")
		}
		return cli.Tool(name, func(ctx context.Context, cfg app.Config, log *zap.Logger) (int, error) {
			return 0, app.Diag(ctx, cfg, log, os.Stdout)
		})
	case "send":
		if len(args) != 3 {
			return usage(os.Stderr, cmd, "send takes a NUMBER and a TEXT")
		}
		return cli.Tool(name, func(ctx context.Context, cfg app.Config, log *zap.Logger) (int, error) {
			return 0, app.Send(ctx, cfg, log, os.Stdout, args[1], args[2])
		})
	case "canary":
		if len(args) != 1 {
			return usage(os.Stderr, cmd, "canary takes no arguments")
		}
		return cli.Tool(name, func(ctx context.Context, cfg app.Config, log *zap.Logger) (int, error) {
			return 0, app.Canary(ctx, cfg, log, os.Stdout)
		})
	case "ledger":
		fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		unknown := fs.Bool("unknown", false, "only sends whose outcome is unknown")
		asJSON := fs.Bool("json", false, "JSON objects")
		if err := fs.Parse(args[1:]); err != nil {
			return usage(os.Stderr, cmd, err.Error())
		}
		if fs.NArg() > 0 {
			return usage(os.Stderr, cmd, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
		}
		return cli.Tool(name, func(_ context.Context, cfg app.Config, _ *zap.Logger) (int, error) {
			return 0, app.Ledger(cfg, os.Stdout, *unknown, *asJSON)
		})
	}
	return usage(os.Stderr, "", fmt.Sprintf("unknown command %q", cmd))
}

// usage prints a command-line mistake, then the right usage; exit 2.
func usage(w io.Writer, cmd, msg string) int {
	fmt.Fprintf(w, "%s: %s\n\n", name, msg)
	if h, ok := help[cmd]; ok {
		fmt.Fprint(w, h)
	} else {
		fmt.Fprintf(w, "usage: %s [command]\n\n%s\nSee %s --help for the settings.\n", name, commands, name)
	}
	return 2
}
