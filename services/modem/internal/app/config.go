package app

import (
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/services/modem/internal/ratelimit"

	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Config is the modem service's configuration; the variable names are the
// interface documented in design.md.
type Config struct {
	Device      string          `env:"MODEM_DEVICE" envDefault:"/dev/ttyUSB0" help:"serial port (prefer /dev/serial/by-id/...) or tcp://host:port"`
	Baud        int             `env:"MODEM_BAUD" envDefault:"115200" help:"serial speed"`
	PIN         string          `env:"MODEM_PIN,unset" help:"SIM PIN, entered only when the SIM asks"`
	Timeout     config.Duration `env:"MODEM_TIMEOUT" envDefault:"30s" help:"per-command timeout"`
	SendTimeout config.Duration `env:"MODEM_SEND_TIMEOUT" envDefault:"120s" help:"timeout for one AT+CMGS"`
	Number      string          `env:"MODEM_NUMBER" help:"the SIM's own number"`
	Country     string          `env:"MODEM_COUNTRY" envDefault:"RO" help:"region for national numbers"`
	Countries   string          `env:"MODEM_COUNTRIES" help:"ISO codes of the countries whose SMS this modem sends (the SMS's CountryCode), e.g. RO or RO,MD; empty is any"`
	ModemID     string          `env:"MODEM_ID" help:"this modem's name on the broker (heartbeat, metrics, sms-poller check); unique per modem; default its IMEI"`
	RateLimit   string          `env:"MODEM_RATE_LIMIT" help:"most SMS parts in any sliding window, e.g. 6/m or 10/m,300/h,1000/d (units s, m, h, d); empty is none"`
	NATSURL     string          `env:"NATS_URL" envDefault:"nats://poller:4222" help:"the poller's broker: nats://host:port, or tls://host:port when the poller sets NATS_TLS_CERT"`
	NATSCA      string          `env:"NATS_CA" help:"PEM file of the CA that signed the poller's NATS_TLS_CERT (needs a tls:// NATS_URL); empty: the system's roots"`
	NATSUser    string          `env:"NATS_USER" help:"broker user (required by the service)"`
	NATSPass    string          `env:"NATS_PASSWORD,unset" help:"broker password (required by the service)"`
	DataDir     string          `env:"MODEM_DATA_DIR" envDefault:"/data" help:"directory of the send ledger"`
	HTTPAddr    string          `env:"HTTP_ADDR" envDefault:":8081" help:"address of /healthz, /readyz and /metrics"`
	LogLevel    string          `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat   string          `env:"LOG_FORMAT" envDefault:"json" help:"json or console"`
	// LOG_FILE, LOG_FILE_MAX_SIZE, LOG_FILE_BACKUPS (legacy LogFile,
	// MaxLogFileSize, LogBackupCount).
	logging.File

	// The receive path: incoming SMS and delivery reports (issue 13).
	Receive           bool            `env:"MODEM_RECEIVE" envDefault:"true" help:"read, forward and delete incoming SMS and stored status reports"`
	ReassemblyTimeout config.Duration `env:"MODEM_REASSEMBLY_TIMEOUT" envDefault:"10m" help:"forward a long SMS with parts missing after this long"`
	DeliveryReports   bool            `env:"MODEM_DELIVERY_REPORTS" envDefault:"true" help:"request a status report for every part and emit sms.delivery"`
	CanaryInterval    config.Duration `env:"CANARY_INTERVAL" envDefault:"0s" help:"send a canary SMS this often and wait for it to come back; 0 is off"`
	CanaryNumber      string          `env:"CANARY_NUMBER" help:"where the canary goes; default MODEM_NUMBER"`
	CanaryTimeout     config.Duration `env:"CANARY_TIMEOUT" envDefault:"5m" help:"how long a canary may take before it counts as failed"`

	// Beyond the documented interface: tuning with safe defaults.
	MaxParts  int             `env:"MODEM_MAX_PARTS" envDefault:"10" help:"longest message, in SMS parts"`
	KeepAlive config.Duration `env:"MODEM_KEEPALIVE" envDefault:"30s" help:"signal and registration poll"`
	// LedgerRetention is how long a sent SMS is remembered, so that a
	// later claim of it (the API re-queues after its trust timeout, 30 min
	// by default) is answered instead of sent again. An entry also stays
	// at least an hour past its SMS's own expiry.
	LedgerRetention config.Duration `env:"LEDGER_RETENTION" envDefault:"24h" help:"how long a sent SMS is remembered against a second claim"`
	// UnreadyGrace is how long the modem may be not ready before /healthz
	// (and so the container's health) turns red.
	UnreadyGrace config.Duration `env:"MODEM_UNREADY_GRACE" envDefault:"2m" help:"how long the modem may be not ready before /healthz turns red"`
}

// Validate checks what the struct tags cannot; every error names its
// variable. Whether MODEM_DEVICE exists is not checked here: the service
// waits for a modem that is unplugged at start.
func (c Config) Validate() error {
	var errs config.Errors
	bad := func(name, v, want string) { errs = append(errs, config.Invalid(name, v, want)) }
	if strings.TrimSpace(c.Device) == "" {
		errs = append(errs, config.Missing("MODEM_DEVICE", "the modem's serial port, e.g. /dev/serial/by-id/usb-...-if02-port0, or tcp://host:port"))
	}
	if c.Baud <= 0 {
		bad("MODEM_BAUD", strconv.Itoa(c.Baud), "a positive serial speed such as 115200")
	}
	if c.PIN != "" && (len(c.PIN) < 4 || len(c.PIN) > 8 || strings.Trim(c.PIN, "0123456789") != "") {
		errs = append(errs, &config.Error{Var: "MODEM_PIN", Set: true, Secret: true, Want: "4 to 8 digits"})
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"MODEM_TIMEOUT", c.Timeout}, {"MODEM_SEND_TIMEOUT", c.SendTimeout}, {"MODEM_KEEPALIVE", c.KeepAlive}, {"MODEM_UNREADY_GRACE", c.UnreadyGrace}} {
		if d.v.D() <= 0 {
			bad(d.name, d.v.String(), "a positive duration such as 30s")
		}
	}
	if cc := c.Country; len(cc) != 2 || strings.Trim(strings.ToUpper(cc), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		bad("MODEM_COUNTRY", cc, "a two-letter ISO country code, e.g. RO")
	}
	u, err := url.Parse(c.NATSURL)
	if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
		bad("NATS_URL", c.NATSURL, "nats://host:port or tls://host:port, e.g. nats://poller:4222")
	}
	if c.NATSCA != "" {
		if err == nil && u.Scheme != "tls" {
			bad("NATS_CA", c.NATSCA, "it only with NATS_URL=tls://host:port (NATS_URL is "+c.NATSURL+")")
		} else if _, err := loadCA(c.NATSCA); err != nil {
			bad("NATS_CA", c.NATSCA, "a readable PEM file with the CA certificate that signed the poller's NATS_TLS_CERT ("+err.Error()+")")
		}
	}
	if _, err := c.CountryCodes(); err != nil {
		errs = append(errs, err)
	}
	if c.ModemID != "" && !schema.ValidModemID(c.ModemID) {
		bad("MODEM_ID", c.ModemID, "1 to 32 letters, digits, '-' or '_', unique per modem, e.g. pi1-ro")
	}
	if _, err := ratelimit.Parse(c.RateLimit); err != nil {
		bad("MODEM_RATE_LIMIT", c.RateLimit, "limits like 6/m or 10/m,300/h,1000/d ("+err.Error()+")")
	}
	if c.DataDir == "" {
		errs = append(errs, config.Missing("MODEM_DATA_DIR", "a directory for the send ledger"))
	}
	if c.MaxParts < 1 || c.MaxParts > 255 {
		bad("MODEM_MAX_PARTS", strconv.Itoa(c.MaxParts), "a whole number from 1 to 255")
	}
	errs = append(errs, c.receiveErrors()...)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// loadCA reads a PEM file of CA certificates, as nats.RootCAs does on
// every TLS handshake, and fails on one without any.
func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM CERTIFICATE block in it")
	}
	return pool, nil
}

// Logging implements cli.Logged.
func (c Config) Logging() (level, format string) { return c.LogLevel, c.LogFormat }

// receiveErrors checks the receive path and the canary; startReceive asks
// too, since tests run the service without loading the environment.
func (c Config) receiveErrors() config.Errors {
	var errs config.Errors
	bad := func(name, v, want string) { errs = append(errs, config.Invalid(name, v, want)) }
	if c.Receive && c.ReassemblyTimeout.D() <= 0 {
		bad("MODEM_REASSEMBLY_TIMEOUT", c.ReassemblyTimeout.String(), "a positive duration such as 10m")
	}
	if c.CanaryInterval.D() < 0 {
		bad("CANARY_INTERVAL", c.CanaryInterval.String(), "a duration such as 1h, or 0 for no canary")
	}
	if c.CanaryInterval.D() <= 0 {
		return errs
	}
	if c.CanaryTimeout.D() <= 0 {
		bad("CANARY_TIMEOUT", c.CanaryTimeout.String(), "a positive duration such as 5m")
	}
	if !c.Receive {
		bad("MODEM_RECEIVE", "false", "true while CANARY_INTERVAL is set: the canary waits for its SMS to come back")
	}
	if _, err := c.canaryNumber(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// canaryNumber is CANARY_NUMBER, else MODEM_NUMBER.
func (c Config) canaryNumber() (pdu.Number, *config.Error) {
	raw, name := c.CanaryNumber, "CANARY_NUMBER"
	if raw == "" {
		raw, name = c.Number, "MODEM_NUMBER"
	}
	if raw == "" {
		return pdu.Number{}, config.Missing("CANARY_NUMBER", "the number the canary goes to (default MODEM_NUMBER, the SIM's own)")
	}
	n, err := pdu.ParseNumber(raw, c.Country)
	if err != nil {
		return pdu.Number{}, config.Invalid(name, raw, "a phone number the canary can reach, e.g. +40722999099")
	}
	return n, nil
}

// CountryCodes returns MODEM_COUNTRIES upper-cased and de-duplicated, in
// its order; none means any country.
func (c Config) CountryCodes() ([]string, *config.Error) {
	var out []string
	for _, cc := range strings.Split(c.Countries, ",") {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		switch {
		case cc == "":
		case !schema.ValidCountry(cc):
			return nil, config.Invalid("MODEM_COUNTRIES", c.Countries, "two-letter ISO country codes separated by commas, e.g. RO or RO,MD; empty for any")
		case !slices.Contains(out, cc):
			out = append(out, cc)
		}
	}
	return out, nil
}
