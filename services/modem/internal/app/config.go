package app

import "github.com/sensorsreport/smsgw/shared/config"

// Config is the modem service's configuration; the variable names are the
// interface documented in design.md.
type Config struct {
	Device      string          `env:"MODEM_DEVICE" envDefault:"/dev/ttyUSB0"`
	Baud        int             `env:"MODEM_BAUD" envDefault:"115200"`
	PIN         string          `env:"MODEM_PIN,unset"`
	Timeout     config.Duration `env:"MODEM_TIMEOUT" envDefault:"30s"`
	SendTimeout config.Duration `env:"MODEM_SEND_TIMEOUT" envDefault:"120s"`
	Number      string          `env:"MODEM_NUMBER"`
	Country     string          `env:"MODEM_COUNTRY" envDefault:"RO"`
	NATSURL     string          `env:"NATS_URL" envDefault:"nats://poller:4222"`
	NATSUser    string          `env:"NATS_USER"`
	NATSPass    string          `env:"NATS_PASSWORD,unset"`
	DataDir     string          `env:"MODEM_DATA_DIR" envDefault:"/data"`
	HTTPAddr    string          `env:"HTTP_ADDR" envDefault:":8081"`
	LogLevel    string          `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat   string          `env:"LOG_FORMAT" envDefault:"json"`

	// The receive path: incoming SMS and delivery reports (issue 13).
	Receive           bool            `env:"MODEM_RECEIVE" envDefault:"true"`
	ReassemblyTimeout config.Duration `env:"MODEM_REASSEMBLY_TIMEOUT" envDefault:"10m"`
	DeliveryReports   bool            `env:"MODEM_DELIVERY_REPORTS" envDefault:"true"`
	CanaryInterval    config.Duration `env:"CANARY_INTERVAL" envDefault:"0s"`
	CanaryNumber      string          `env:"CANARY_NUMBER"`
	CanaryTimeout     config.Duration `env:"CANARY_TIMEOUT" envDefault:"5m"`

	// Beyond the documented interface: tuning with safe defaults.
	MaxParts  int             `env:"MODEM_MAX_PARTS" envDefault:"10"`
	KeepAlive config.Duration `env:"MODEM_KEEPALIVE" envDefault:"30s"`
	// UnreadyGrace is how long the modem may be not ready before /healthz
	// (and so the container's health) turns red.
	UnreadyGrace config.Duration `env:"MODEM_UNREADY_GRACE" envDefault:"2m"`
}

// Logging implements cli.Logged.
func (c Config) Logging() (level, format string) { return c.LogLevel, c.LogFormat }
