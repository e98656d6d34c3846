package app

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/logging"
)

const scopesWant = "OAuth scope tokens (printable ASCII without quotes or backslashes) separated by spaces or commas, e.g. openid"

// Config is the poller's configuration; the variable names are the
// interface documented in design.md.
type Config struct {
	APIURL       string          `env:"SMS_API_URL,required" help:"base URL of the SMS API, e.g. https://api.example.net"`
	APIPrefix    string          `env:"SMS_API_PREFIX" envDefault:"/api" help:"API path prefix; /gateway/sms behind Ocelot"`
	Provider     string          `env:"SMS_PROVIDER_NAME" help:"provider name; default RaspberryPI-Gateway-<digits of MODEM_NUMBER> or the host name"`
	ModemNumber  string          `env:"MODEM_NUMBER" help:"the SIM's own number (names the provider)"`
	Countries    []string        `env:"SMS_COUNTRIES" envDefault:"RO" envSeparator:"," help:"ISO country codes to claim SMS for"`
	PollInterval config.Duration `env:"POLL_INTERVAL" envDefault:"10s" help:"idle poll interval"`

	KeycloakURL   string `env:"KEYCLOAK_URL" help:"Keycloak base URL; the issuer is KEYCLOAK_URL/realms/KEYCLOAK_REALM"`
	KeycloakRealm string `env:"KEYCLOAK_REALM" envDefault:"sr" help:"Keycloak realm"`
	IssuerURL     string `env:"OIDC_ISSUER_URL" help:"OIDC issuer URL; overrides KEYCLOAK_URL and KEYCLOAK_REALM"`
	ClientID      string `env:"KEYCLOAK_CLIENT_ID" envDefault:"sms-gateway" help:"OAuth client id"`
	ClientSecret  string `env:"KEYCLOAK_CLIENT_SECRET,unset" help:"OAuth client secret (confidential clients)"`
	User          string `env:"KEYCLOAK_USER" help:"user for the password grant; empty: client credentials"`
	Password      string `env:"KEYCLOAK_PASSWORD,unset" help:"that user's password"`
	OIDCScopes    string `env:"OIDC_SCOPES" envDefault:"openid" help:"scopes sent with the login, space- or comma-separated (dex needs openid)"`

	NATSListen string `env:"NATS_LISTEN" envDefault:"0.0.0.0:4222" help:"embedded broker address (for the modems; publish it only with TLS on)"`
	NATSUser   string `env:"NATS_USER,required" help:"user the modem logs in to the broker with"`
	NATSPass   string `env:"NATS_PASSWORD,required,unset" help:"that user's password"`
	StoreDir   string `env:"NATS_STORE_DIR" envDefault:"/data" help:"JetStream file store directory"`
	HTTPAddr   string `env:"HTTP_ADDR" envDefault:":8080" help:"address of /healthz, /readyz and /metrics"`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat  string `env:"LOG_FORMAT" envDefault:"json" help:"json or console"`
	// LOG_FILE, LOG_FILE_MAX_SIZE, LOG_FILE_BACKUPS (legacy LogFile,
	// MaxLogFileSize, LogBackupCount).
	logging.File

	// Events from the modem (sms.received, sms.delivery) go to this URL,
	// signed with the secret; empty keeps them in the broker only.
	WebhookURL    string `env:"INCOMING_WEBHOOK_URL" help:"where incoming SMS and delivery reports are POSTed; empty keeps them in the broker"`
	WebhookSecret string `env:"INCOMING_WEBHOOK_SECRET,unset" help:"HMAC-SHA256 key of X-Smsgw-Signature (required with a URL)"`

	// Both set: the broker listener requires TLS, for modems on other
	// hosts (README "A second Pi with its own modem").
	NATSTLSCert string `env:"NATS_TLS_CERT" help:"PEM certificate (chain) of the broker listener; with NATS_TLS_KEY the listener requires TLS"`
	NATSTLSKey  string `env:"NATS_TLS_KEY" help:"PEM private key of NATS_TLS_CERT (keep it chmod 640 or 600)"`

	// Beyond the documented interface: tuning with safe defaults.
	MaxQueued  int             `env:"MAX_QUEUED_JOBS" envDefault:"2" help:"unsent jobs allowed to wait per ready modem"`
	AckWait    config.Duration `env:"JOB_ACK_WAIT" envDefault:"2m" help:"how long a job may go without a modem heartbeat before redelivery"`
	MaxDeliver int             `env:"JOB_MAX_DELIVER" envDefault:"10" help:"deliveries before a job is reported Failed"`
	MaxStoreMB int64           `env:"NATS_MAX_STORE_MB" envDefault:"320" help:"cap on the JetStream store, in MB"`
}

// Validate checks what the struct tags cannot: every error names its
// variable and what is expected.
func (c Config) Validate() error {
	var errs config.Errors
	bad := func(name, v, want string) { errs = append(errs, config.Invalid(name, v, want)) }
	if !httpURL(c.APIURL) {
		bad("SMS_API_URL", c.APIURL, "an absolute http(s) URL such as https://api.example.net")
	}
	if strings.ContainsAny(c.APIPrefix, "?# ") {
		bad("SMS_API_PREFIX", c.APIPrefix, "a URL path such as /api or /gateway/sms")
	}
	if len(c.CountryCodes()) == 0 {
		bad("SMS_COUNTRIES", strings.Join(c.Countries, ","), "at least one ISO country code, e.g. RO or RO,GB")
	}
	for _, cc := range c.CountryCodes() {
		if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
			bad("SMS_COUNTRIES", strings.Join(c.Countries, ","), "two-letter ISO country codes separated by commas, e.g. RO,GB")
			break
		}
	}
	if c.PollInterval.D() <= 0 {
		bad("POLL_INTERVAL", c.PollInterval.String(), "a positive duration such as 10s")
	}
	if c.KeycloakURL != "" && !httpURL(c.KeycloakURL) {
		bad("KEYCLOAK_URL", c.KeycloakURL, "an absolute http(s) URL such as https://keycloak.example.net")
	}
	if c.IssuerURL != "" && !httpURL(c.IssuerURL) {
		bad("OIDC_ISSUER_URL", c.IssuerURL, "an absolute http(s) URL such as https://keycloak.example.net/realms/sr")
	}
	if _, err := auth.ParseScopes(c.OIDCScopes); err != nil {
		bad("OIDC_SCOPES", c.OIDCScopes, scopesWant)
	}
	if c.IssuerURL == "" && c.KeycloakURL != "" && c.KeycloakRealm == "" {
		errs = append(errs, config.Missing("KEYCLOAK_REALM", "the realm name (e.g. sr) when KEYCLOAK_URL is set"))
	}
	if (c.IssuerURL != "" || c.KeycloakURL != "") && c.ClientID == "" {
		errs = append(errs, config.Missing("KEYCLOAK_CLIENT_ID", "the OAuth client id when an issuer is configured"))
	}
	if c.User != "" && c.Password == "" {
		errs = append(errs, config.Missing("KEYCLOAK_PASSWORD", "the password of KEYCLOAK_USER "+strconv.Quote(c.User)))
	}
	if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
		bad("NATS_LISTEN", c.NATSListen, "host:port, e.g. 0.0.0.0:4222")
	}
	if _, _, err := c.brokerTLS(); err != nil {
		ce, _ := errors.AsType[*config.Error](err) // brokerTLS returns nothing else
		errs = append(errs, ce)
	}
	if c.StoreDir == "" {
		errs = append(errs, config.Missing("NATS_STORE_DIR", "a directory for the JetStream store"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", c.HTTPAddr, "host:port or :port, e.g. :8080")
	}
	if c.MaxQueued < 1 {
		bad("MAX_QUEUED_JOBS", strconv.Itoa(c.MaxQueued), "a whole number of at least 1")
	}
	if c.AckWait.D() <= 0 {
		bad("JOB_ACK_WAIT", c.AckWait.String(), "a positive duration such as 2m")
	}
	if c.MaxDeliver < 1 {
		bad("JOB_MAX_DELIVER", strconv.Itoa(c.MaxDeliver), "a whole number of at least 1")
	}
	if c.MaxStoreMB < 1 {
		bad("NATS_MAX_STORE_MB", strconv.FormatInt(c.MaxStoreMB, 10), "a whole number of megabytes, at least 1")
	}
	if c.WebhookURL != "" {
		if !httpURL(c.WebhookURL) {
			bad("INCOMING_WEBHOOK_URL", redactURL(c.WebhookURL), "an absolute http(s) URL such as https://hooks.example.net/sms")
		}
		if c.WebhookSecret == "" {
			errs = append(errs, config.Missing("INCOMING_WEBHOOK_SECRET",
				"the HMAC key for X-Smsgw-Signature when INCOMING_WEBHOOK_URL is set"))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// redactURL hides credentials and the query, which may carry a token.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
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
