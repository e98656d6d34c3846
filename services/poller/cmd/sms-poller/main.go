// Command sms-poller claims SMS from the SensorsReport SMS API, queues them
// for the modem through its embedded JetStream broker and reports results.
package main

import (
	"fmt"
	"os"

	_ "golang.org/x/crypto/x509roots/fallback" // CA roots for FROM scratch images

	"github.com/sensorsreport/smsgw/services/poller/internal/app"
	"github.com/sensorsreport/smsgw/shared/cli"
)

const usage = `usage: sms-poller [command]

  (none)        run the service
  healthcheck   exit 0 when the local /healthz answers (for Docker HEALTHCHECK)
  version       print the version

Configuration comes from the environment (SMS_API_URL, KEYCLOAK_URL, NATS_USER, ...);
see README.md. CONFIG_FILE may name a legacy config.ini.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Println(cli.Version)
			return 0
		case "healthcheck":
			return cli.Healthcheck(os.Stdout, ":8080", "/healthz")
		case "-h", "--help", "help":
			fmt.Print(usage)
			return 0
		default:
			fmt.Fprint(os.Stderr, usage)
			return 2
		}
	}
	return cli.Run("sms-poller", app.Run)
}
