// Command sms-poller claims SMS from the SensorsReport SMS API, queues them
// for the modem through its embedded JetStream broker and reports results.
// Its operator commands check an installation and drive the SMS API with
// the service's own configuration and token.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	_ "golang.org/x/crypto/x509roots/fallback" // CA roots for FROM scratch images

	"github.com/sensorsreport/smsgw/services/poller/internal/app"
	"github.com/sensorsreport/smsgw/shared/cli"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/logging"
)

const name = "sms-poller"

const commands = `  (none)        run the service
  check         check the installation: configuration, Keycloak, SMS API, provider, store, modem
  sms ...       list, get, create, send or delete SMS on the SMS API (help sms)
  provider ...  show or register the provider record (help provider)
  healthcheck   exit 0 when the local /healthz answers (for Docker HEALTHCHECK)
  version       print version, commit, build date, Go version and platform
  help [CMD]    this text, or one command's
`

// help holds each command's own usage.
var help = map[string]string{
	"check": `usage: sms-poller check

Runs every check and prints one line per check: OK, FAIL (with the reason
and the variables to look at) or SKIP (cannot run here, or needs a check
that failed). Checks: configuration; OIDC discovery; login with the
configured grant (prints the token's lifetime, never the token); SMS API
/health; the API answering under SMS_API_PREFIX; this provider as the API
knows it; NATS_STORE_DIR writable; and, when a poller is running at
HTTP_ADDR, whether the modem is connected and ready.
Exit status: 0 all fine, 1 a check failed, 2 configuration unusable.
`,
	"sms": `usage:
  sms-poller sms list  [--tenant T] [--status S] [--country CC] [--from T] [--to T] [--limit N] [--offset N] [--json]
  sms-poller sms get ID --tenant T [--json]
  sms-poller sms create --to NUMBER --text TEXT --tenant T [--ttl MIN] [--country CC] [--type TYPE] [--provider P] [--json]
  sms-poller sms send   --to NUMBER --text TEXT --tenant T [--ttl MIN] [--wait DURATION]
  sms-poller sms delete ID --tenant T

list pages through the API with limit/offset (--limit 0: everything; default
100); without --tenant it lists every tenant. --status takes a name (Sent)
or number (2); --from/--to take 2025-08-27T07:00:00Z, 2025-08-27 or a
duration ago (2h). create and send address the SMS to this gateway's
provider unless --provider says otherwise. send follows the SMS, printing
each status change, until it is final or --wait (default 2m) is over, and
exits 0 only when it was Sent. --json prints the API's own objects; tables
mask phone numbers.
`,
	"provider": `usage:
  sms-poller provider show [NAME] [--json]   the provider record (default: this gateway's)
  sms-poller provider register [--json]      register this gateway for SMS_COUNTRIES, as the service does at start
`,
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "":
		return cli.Run(name, app.Run)
	case "version":
		cli.PrintVersion(os.Stdout, name)
		return 0
	case "healthcheck":
		return cli.Healthcheck(os.Stdout, ":8080", "/healthz")
	case "-h", "--help", "help":
		if len(args) > 1 && help[args[1]] != "" {
			fmt.Print(help[args[1]])
			fmt.Println()
		}
		cli.Usage[app.Config](os.Stdout, name, commands)
		return 0
	case "check":
		if len(args) > 1 {
			return usage(os.Stderr, "check", errors.New("check takes no arguments"))
		}
		return check()
	case "sms", "provider":
		if len(args) > 1 && (args[1] == "-h" || args[1] == "--help") {
			fmt.Print(help[cmd])
			return 0
		}
		return cli.Tool(name, func(ctx context.Context, cfg app.Config, log *zap.Logger) (int, error) {
			ops, err := app.NewOps(cfg, log, os.Stdout)
			if err != nil {
				return 2, err
			}
			run := ops.SMS
			if cmd == "provider" {
				run = ops.Provider
			}
			code, err := run(ctx, args[1:])
			if ue, ok := errors.AsType[*app.UsageError](err); ok {
				return usage(os.Stderr, cmd, ue), nil
			}
			return code, err
		})
	}
	return usage(os.Stderr, "", fmt.Errorf("unknown command %q", cmd))
}

// usage prints a command-line mistake, then the right usage; exit 2.
func usage(w io.Writer, cmd string, err error) int {
	fmt.Fprintf(w, "%s: %v\n\n", name, err)
	if h, ok := help[cmd]; ok {
		fmt.Fprint(w, h)
	} else {
		fmt.Fprintf(w, "usage: %s [command]\n\n%s\nSee %s --help for the settings.\n", name, commands, name)
	}
	return 2
}

// check prints a FAIL line for a configuration that does not load (exit 2)
// and otherwise runs every check.
func check() int {
	colour := logging.Colour(os.Stdout)
	cfg, err := config.Load[app.Config]()
	if err != nil {
		app.PrintCheck(os.Stdout, app.CheckLine{Outcome: app.FAIL, Name: "configuration", Detail: err.Error()}, colour)
		return 2
	}
	log, err := logging.New("error", "console")
	if err != nil {
		return 2
	}
	defer logging.Sync(log)
	ctx, stop := cli.SignalContext()
	defer stop()
	return app.Check(ctx, cfg, log, func(l app.CheckLine) { app.PrintCheck(os.Stdout, l, colour) })
}
