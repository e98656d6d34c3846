package app

import (
	"errors"
	"net/url"
	"os"
	"strings"

	"github.com/sensorsreport/smsgw/shared/config"
)

// Config is the poller's configuration; the variable names are the
// interface documented in design.md.
type Config struct {
	APIURL       string          `env:"SMS_API_URL,required"`
	APIPrefix    string          `env:"SMS_API_PREFIX" envDefault:"/api"`
	Provider     string          `env:"SMS_PROVIDER_NAME"`
	ModemNumber  string          `env:"MODEM_NUMBER"`
	Countries    []string        `env:"SMS_COUNTRIES" envDefault:"RO" envSeparator:","`
	PollInterval config.Duration `env:"POLL_INTERVAL" envDefault:"10s"`

	KeycloakURL   string `env:"KEYCLOAK_URL"`
	KeycloakRealm string `env:"KEYCLOAK_REALM" envDefault:"sr"`
	IssuerURL     string `env:"OIDC_ISSUER_URL"`
	ClientID      string `env:"KEYCLOAK_CLIENT_ID" envDefault:"sms-gateway"`
	ClientSecret  string `env:"KEYCLOAK_CLIENT_SECRET,unset"`
	User          string `env:"KEYCLOAK_USER"`
	Password      string `env:"KEYCLOAK_PASSWORD,unset"`

	NATSListen string `env:"NATS_LISTEN" envDefault:"0.0.0.0:4222"`
	NATSUser   string `env:"NATS_USER,required"`
	NATSPass   string `env:"NATS_PASSWORD,required,unset"`
	StoreDir   string `env:"NATS_STORE_DIR" envDefault:"/data"`
	HTTPAddr   string `env:"HTTP_ADDR" envDefault:":8080"`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat  string `env:"LOG_FORMAT" envDefault:"json"`

	// Events from the modem (sms.received, sms.delivery) go to this URL,
	// signed with the secret; empty keeps them in the broker only.
	WebhookURL    string `env:"INCOMING_WEBHOOK_URL"`
	WebhookSecret string `env:"INCOMING_WEBHOOK_SECRET,unset"`

	// Beyond the documented interface: tuning with safe defaults.
	MaxQueued  int             `env:"MAX_QUEUED_JOBS" envDefault:"2"`
	AckWait    config.Duration `env:"JOB_ACK_WAIT" envDefault:"2m"`
	MaxDeliver int             `env:"JOB_MAX_DELIVER" envDefault:"10"`
	MaxStoreMB int64           `env:"NATS_MAX_STORE_MB" envDefault:"256"`
}

// ProviderName is SMS_PROVIDER_NAME, else RaspberryPI-Gateway-<digits of
// MODEM_NUMBER> (the legacy gateway's name, so its provider record is
// reused), else the host name.
func (c Config) ProviderName() string {
	if c.Provider != "" {
		return c.Provider
	}
	var digits strings.Builder
	for _, r := range c.ModemNumber {
		if r >= '0' && r <= '9' {
			digits.WriteRune(r)
		}
	}
	if digits.Len() > 0 {
		return "RaspberryPI-Gateway-" + digits.String()
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	return "RaspberryPI-Gateway-" + h
}

// CountryCodes returns the configured countries upper-cased and de-duplicated.
func (c Config) CountryCodes() []string {
	var out []string
	seen := map[string]bool{}
	for _, cc := range c.Countries {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if cc != "" && !seen[cc] {
			seen[cc] = true
			out = append(out, cc)
		}
	}
	return out
}

// Logging implements cli.Logged.
func (c Config) Logging() (level, format string) { return c.LogLevel, c.LogFormat }

// Webhook checks INCOMING_WEBHOOK_URL and INCOMING_WEBHOOK_SECRET: the URL
// must be absolute http(s) and needs a secret, or receivers could not tell
// our events from forged ones.
func (c Config) Webhook() (string, string, error) {
	if c.WebhookURL == "" {
		return "", "", nil
	}
	u, err := url.Parse(c.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", errors.New("INCOMING_WEBHOOK_URL must be an absolute http:// or https:// URL")
	}
	if c.WebhookSecret == "" {
		return "", "", errors.New("INCOMING_WEBHOOK_SECRET is required when INCOMING_WEBHOOK_URL is set")
	}
	return c.WebhookURL, c.WebhookSecret, nil
}
