package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
)

// checkTimeout bounds each network step of Check.
const checkTimeout = 15 * time.Second

// Outcome of one check.
type Outcome string

// Outcomes. SKIP is a check that cannot run because an earlier one failed
// or because the piece it checks is not configured or not running here.
const (
	OK   Outcome = "OK"
	FAIL Outcome = "FAIL"
	SKIP Outcome = "SKIP"
)

// CheckLine is one line of `sms-poller check`.
type CheckLine struct {
	Outcome Outcome
	Name    string
	Detail  string
	Fix     []string // variables to look at on FAIL
}

// checker runs the checks in order, each one seeing what the earlier ones
// found.
type checker struct {
	cfg      Config
	log      *zap.Logger
	out      func(CheckLine)
	failed   bool
	tokens   *auth.Source
	tokenURL string
	token    string
	apiUp    bool
}

func (c *checker) emit(l CheckLine) {
	if l.Outcome == FAIL {
		c.failed = true
	}
	c.out(l)
}

// Check runs every check of an installation and calls out once per check,
// in order. It returns 0 when nothing failed and 1 otherwise; a
// configuration that does not load never gets here (exit 2 in main).
func Check(ctx context.Context, cfg Config, log *zap.Logger, out func(CheckLine)) int {
	c := &checker{cfg: cfg, log: log, out: out}
	c.emit(CheckLine{OK, "configuration", fmt.Sprintf("provider %s, countries %s, API %s%s",
		cfg.ProviderName(), strings.Join(cfg.CountryCodes(), ","), cfg.APIURL, cfg.APIPrefix), nil})
	c.discovery(ctx)
	c.login(ctx)
	c.health(ctx)
	c.provider(ctx)
	c.store()
	c.listenerTLS()
	c.modem(ctx)
	if c.failed {
		return 1
	}
	return 0
}

func (c *checker) issuerVars() []string {
	if c.cfg.IssuerURL != "" {
		return []string{"OIDC_ISSUER_URL"}
	}
	return []string{"KEYCLOAK_URL", "KEYCLOAK_REALM"}
}

func (c *checker) discovery(ctx context.Context) {
	const name = "OIDC discovery"
	tokens, err := newTokens(c.cfg, c.log, nil)
	switch {
	case err != nil:
		c.emit(CheckLine{FAIL, name, err.Error(), c.issuerVars()})
		return
	case tokens == nil:
		c.emit(CheckLine{SKIP, name, "no KEYCLOAK_URL or OIDC_ISSUER_URL: the SMS API is called without a token (it does not enforce one)", nil})
		return
	}
	c.tokens = tokens
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	u, err := tokens.Discover(ctx)
	if err != nil {
		c.emit(CheckLine{FAIL, name, err.Error(), c.issuerVars()})
		return
	}
	c.tokenURL = u
	c.emit(CheckLine{OK, name, "token endpoint " + u, nil})
}

func (c *checker) login(ctx context.Context) {
	const name = "login"
	if c.tokens == nil || c.tokenURL == "" {
		c.emit(CheckLine{SKIP, name, "needs OIDC discovery", nil})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := time.Now()
	l, err := c.tokens.Login(ctx, c.tokenURL)
	who := "as client " + c.cfg.ClientID
	if l.Grant == "password" {
		who = fmt.Sprintf("as user %s (client %s)", c.cfg.User, c.cfg.ClientID)
	}
	if err != nil {
		c.emit(CheckLine{FAIL, name, fmt.Sprintf("%s grant %s: %v", l.Grant, who, err), loginVars(l.Grant, err)})
		return
	}
	c.token = l.AccessToken
	life := "no expiry announced"
	if !l.Expiry.IsZero() {
		life = "token valid for " + l.Expiry.Sub(start).Round(time.Second).String()
	}
	c.emit(CheckLine{OK, name, fmt.Sprintf("%s grant %s: %s", l.Grant, who, life), nil})
}

// loginVars maps a token endpoint refusal to the settings behind it.
func loginVars(grant string, err error) []string {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return []string{"KEYCLOAK_URL", "OIDC_ISSUER_URL"} // no OAuth answer: network or endpoint
	}
	switch {
	case re.ErrorCode == "invalid_grant" && grant == "password":
		return []string{"KEYCLOAK_USER", "KEYCLOAK_PASSWORD"}
	case re.ErrorCode == "invalid_client", re.ErrorCode == "unauthorized_client", re.ErrorCode == "invalid_grant":
		return []string{"KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET"}
	case re.Response.StatusCode >= 500:
		return []string{"KEYCLOAK_URL", "OIDC_ISSUER_URL"}
	default:
		return []string{"KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET", "KEYCLOAK_USER", "KEYCLOAK_PASSWORD"}
	}
}

func (c *checker) api() (*smsapi.Client, error) {
	cfg := smsapi.Config{BaseURL: c.cfg.APIURL, Prefix: c.cfg.APIPrefix, Logger: c.log.Named("api"), Attempts: 1, Timeout: checkTimeout}
	if c.token != "" {
		tok := c.token
		cfg.Token = func(context.Context) (string, error) { return tok, nil }
	}
	return smsapi.New(cfg)
}

func (c *checker) health(ctx context.Context) {
	const name = "SMS API health"
	api, err := c.api()
	if err != nil {
		c.emit(CheckLine{FAIL, name, err.Error(), []string{"SMS_API_URL"}})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := api.Health(ctx); err != nil {
		c.emit(CheckLine{FAIL, name, err.Error(), []string{"SMS_API_URL"}})
		return
	}
	c.apiUp = true
	c.emit(CheckLine{OK, name, strings.TrimRight(c.cfg.APIURL, "/") + "/health answers", nil})
}

// provider asks the API for this gateway's provider record, which also
// proves the prefix: only a wrong prefix gets the routing 404.
func (c *checker) provider(ctx context.Context) {
	const prefixName, name = "SMS API prefix", "provider"
	if !c.apiUp {
		c.emit(CheckLine{SKIP, prefixName, "needs the SMS API", nil})
		c.emit(CheckLine{SKIP, name, "needs the SMS API", nil})
		return
	}
	api, _ := c.api()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	pname := c.cfg.ProviderName()
	p, _, err := api.GetProvider(ctx, pname)
	switch {
	case errors.Is(err, smsapi.ErrWrongRoute):
		c.emit(CheckLine{FAIL, prefixName, fmt.Sprintf("nothing answers under %q: %v", c.cfg.APIPrefix, err), []string{"SMS_API_PREFIX"}})
		c.emit(CheckLine{SKIP, name, "needs the right SMS API prefix", nil})
		return
	case err != nil && !errors.Is(err, smsapi.ErrNotFound):
		c.emit(CheckLine{FAIL, prefixName, err.Error(), []string{"SMS_API_URL", "SMS_API_PREFIX"}})
		c.emit(CheckLine{SKIP, name, "needs the SMS API", nil})
		return
	}
	c.emit(CheckLine{OK, prefixName, fmt.Sprintf("the API answers under %q", c.cfg.APIPrefix), nil})
	want := c.cfg.CountryCodes()
	if p == nil {
		c.emit(CheckLine{OK, name, fmt.Sprintf("%s is not registered yet; the poller registers it at start for %s", pname, strings.Join(want, ",")), nil})
		return
	}
	d := fmt.Sprintf("%s: %s, countries %s, last seen %s", p.Name, p.StatusName(),
		strings.Join(p.SupportedCountryCodes, ","), p.LastSeen.Local().Format(time.DateTime))
	if !sameCodes(p.SupportedCountryCodes, want) {
		d += fmt.Sprintf(" (SMS_COUNTRIES is %s; the API never changes a provider's countries, and the poller claims per country, so only the record differs)",
			strings.Join(want, ","))
	}
	c.emit(CheckLine{OK, name, d, nil})
}

func sameCodes(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// store proves the broker can write its file store, without creating it:
// a missing directory is fine when the broker could create it.
func (c *checker) store() {
	const name = "broker store"
	dir, note := c.cfg.StoreDir, " is writable"
	for {
		fi, err := os.Stat(dir)
		if err == nil && !fi.IsDir() {
			c.emit(CheckLine{FAIL, name, dir + " is not a directory", []string{"NATS_STORE_DIR"}})
			return
		}
		if err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, fs.ErrNotExist) || parent == dir {
			c.emit(CheckLine{FAIL, name, err.Error(), []string{"NATS_STORE_DIR"}})
			return
		}
		dir, note = parent, fmt.Sprintf(" is writable; the broker creates %s in it", c.cfg.StoreDir)
	}
	f, err := os.CreateTemp(dir, ".check-*")
	if err == nil {
		_ = f.Close()
		err = os.Remove(f.Name())
	}
	if err != nil {
		c.emit(CheckLine{FAIL, name, fmt.Sprintf("%s is not writable: %v", dir, err), []string{"NATS_STORE_DIR"}})
		return
	}
	c.emit(CheckLine{OK, name, dir + note, nil})
}

// listenerTLS reports whether the broker listener requires TLS and with
// which certificate; plain TCP is fine for modems on this host or compose
// network, so it is OK too. It fails on a certificate that is expired, not yet
// valid, within 14 days of its end or without subject alternative names;
// a private key every user may read is named in the detail.
func (c *checker) listenerTLS() {
	const name = "broker listener"
	_, leaf, err := c.cfg.brokerTLS()
	switch {
	case err != nil: // Validate already refused it; kept for callers that skip it
		c.emit(CheckLine{FAIL, name, err.Error(), []string{"NATS_TLS_CERT", "NATS_TLS_KEY"}})
		return
	case leaf == nil:
		c.emit(CheckLine{OK, name, "plain TCP on " + c.cfg.NATSListen +
			", for modems on this host or compose network; set NATS_TLS_CERT and NATS_TLS_KEY before a modem on another host joins", nil})
		return
	}
	now := time.Now()
	detail := "TLS required on " + c.cfg.NATSListen + ", cert " + describeCert(leaf, now)
	if worldReadable(c.cfg.NATSTLSKey) {
		detail += "; warning: NATS_TLS_KEY " + c.cfg.NATSTLSKey + " is readable by every user (chmod 640)"
	}
	if p := certProblem(leaf, now); p != "" {
		c.emit(CheckLine{FAIL, name, detail + ": " + p, []string{"NATS_TLS_CERT"}})
		return
	}
	c.emit(CheckLine{OK, name, detail, nil})
}

// modem reads the running poller's sms_poller_modem_ready gauge (1 while a
// fresh heartbeat of at least one sms-modem says it can send) and lists
// every modem from sms_poller_modem_up.
func (c *checker) modem(ctx context.Context) {
	const name = "modem"
	addr := probeAddr(c.cfg.HTTPAddr)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ready, modems, err := modemReady(ctx, addr)
	list := ""
	if len(modems) > 0 {
		list = ": " + strings.Join(modems, "; ")
	}
	switch {
	case err != nil:
		c.emit(CheckLine{SKIP, name, fmt.Sprintf("no running poller answers at %s (HTTP_ADDR): %v", addr, err), nil})
	case !ready:
		c.emit(CheckLine{FAIL, name, "the poller is running but has no fresh ready heartbeat from any sms-modem: none is connected to the broker or can send (run sms-modem diag)" + list,
			[]string{"NATS_USER", "NATS_PASSWORD", "NATS_URL (modem)", "MODEM_DEVICE (modem)", "MODEM_PIN (modem)", "MODEM_ID (modem)"}})
	default:
		c.emit(CheckLine{OK, name, "connected to the broker and ready to send" + list, nil})
	}
}

// modemUpLine matches one sms_poller_modem_up series (labels sorted).
var modemUpLine = regexp.MustCompile(`^sms_poller_modem_up\{countries="([^"]*)",modem="([^"]*)",state="([^"]*)"\} (\S+)`)

// headroomLine matches one sms_poller_modem_rate_headroom series.
var headroomLine = regexp.MustCompile(`^sms_poller_modem_rate_headroom\{modem="([^"]*)",window="([^"]*)"\} (\S+)`)

// probeAddr turns a listen address into one to dial.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// modemReady reads the poller's metrics: whether any modem is ready, and
// each modem as "id state (countries)".
func modemReady(ctx context.Context, addr string) (bool, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return false, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var ids []string
	desc, headroom := map[string]string{}, map[string][]string{}
	ready, found := false, false
	for sc.Scan() {
		if m := modemUpLine.FindStringSubmatch(sc.Text()); m != nil {
			countries := m[1]
			if countries == "" {
				countries = "any country"
			}
			ids = append(ids, m[2])
			desc[m[2]] = fmt.Sprintf("%s %s (%s", m[2], m[3], countries)
		}
		if m := headroomLine.FindStringSubmatch(sc.Text()); m != nil {
			headroom[m[1]] = append(headroom[m[1]], fmt.Sprintf("%s left of %s", m[3], m[2]))
		}
		if v, ok := strings.CutPrefix(sc.Text(), "sms_poller_modem_ready "); ok {
			ready, found = strings.TrimSpace(v) == "1", true
		}
	}
	if !found {
		return false, nil, errors.New("GET /metrics: no sms_poller_modem_ready (not an sms-poller?)")
	}
	modems := make([]string, 0, len(ids))
	for _, id := range ids {
		d := desc[id]
		if h := headroom[id]; len(h) > 0 {
			d += "; rate limit " + strings.Join(h, ", ")
		}
		modems = append(modems, d+")")
	}
	return ready, modems, nil
}

// PrintCheck renders one line: outcome, check, detail and, on FAIL, the
// variables to fix. colour adds ANSI colours (terminals only).
func PrintCheck(w io.Writer, l CheckLine, colour bool) {
	tag := string(l.Outcome)
	if colour {
		code := map[Outcome]string{OK: "32", FAIL: "31", SKIP: "33"}[l.Outcome]
		tag = "\x1b[" + code + "m" + tag + "\x1b[0m"
	}
	pad := strings.Repeat(" ", 4-len(l.Outcome))
	line := fmt.Sprintf("%s%s  %-15s %s", tag, pad, l.Name, l.Detail)
	if len(l.Fix) > 0 {
		line += " → check " + strings.Join(l.Fix, ", ")
	}
	fmt.Fprintln(w, strings.ReplaceAll(line, "\n", " "))
}
