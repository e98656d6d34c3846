// Package harness runs the whole gateway on the stand-ins: the SMS API and
// OIDC provider on one loopback HTTP server, the modem simulator on a
// pseudo-terminal, and the real sms-poller and sms-modem binaries as child
// processes that can be stopped, killed and restarted. The demo, the
// end-to-end tests and the benchmarks all drive it.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/oidc"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/health"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Realm, client and user the stand-in OIDC provider is set up with.
const (
	Realm        = "sr"
	ClientID     = "sms-gateway"
	ClientSecret = "devstack-secret"
	User         = "gateway"
	Password     = "devstack-password"
	NATSUser     = "modem"
	NATSPassword = "devstack-nats-password"
)

// Options configure a stack. Zero values take the defaults noted.
type Options struct {
	Bin string // directory with sms-poller and sms-modem (required)
	Dir string // working directory for stores, ledger and logs (required)

	Countries    []string      // default RO
	PollInterval time.Duration // POLL_INTERVAL, default 500ms
	AckWait      time.Duration // JOB_ACK_WAIT, default 10s (short, so a killed modem's job comes back soon)
	MaxQueued    int           // MAX_QUEUED_JOBS, default 2
	AccessTTL    time.Duration // default 5 min
	RefreshTTL   time.Duration // default 30 min
	// APIClockOffset runs the SMS API stand-in's clock this far from the
	// host's (smsapi.Options.ClockOffset): 2 h ahead, or -2 h behind.
	APIClockOffset time.Duration
	// API tunes the SMS API stand-in (trust timeout, task interval, retry
	// limit, API generation, token enforcement). Verify, DevEndpoints,
	// ClockOffset and Logger are the harness's.
	API smsapi.Options
	Sim modemsim.Config
	// Logs receives both binaries' logs; nil writes poller.log and modem.log in Dir.
	Logs       io.Writer
	LogLevel   string   // default info
	PollerEnv  []string // extra KEY=VALUE for the poller
	ModemEnv   []string // extra KEY=VALUE for the modem
	NoServices bool     // start only the stand-ins
	Log        *zap.Logger
	// BrokerTLS, when set, makes the poller's broker listener require TLS
	// (NATS_TLS_CERT, NATS_TLS_KEY); every modem then connects to
	// tls://127.0.0.1:port and verifies with NATS_CA.
	BrokerTLS *BrokerTLS
}

// BrokerTLS names the PEM files of a broker listener with TLS.
type BrokerTLS struct {
	CertFile, KeyFile string // the poller's NATS_TLS_CERT and NATS_TLS_KEY
	CAFile            string // the modems' NATS_CA
}

// Stack is a running gateway on stand-ins.
type Stack struct {
	API     *smsapi.Server
	OIDC    *oidc.Provider
	Sim     *modemsim.Sim
	BaseURL string // stand-in API and OIDC server
	Poller  *Proc
	Modem   *Proc

	// PollerHTTP and ModemHTTP are the services' health/metrics addresses.
	PollerHTTP, ModemHTTP string
	// NATSURL is the poller's broker, for clients with the modem's
	// credentials (NATSUser, NATSPassword): tls:// with Options.BrokerTLS.
	NATSURL   string
	ModemLink string // the pty symlink the modem opens

	// Modems are the modems added with AddModem, beside Modem.
	Modems []*ExtraModem

	opts    Options
	menv    []string // the modem environment every modem shares
	srv     *http.Server
	cancel  context.CancelFunc
	closers []io.Closer
}

// Start brings the stand-ins up and, unless NoServices, both binaries, and
// waits until the modem is ready to send.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Bin == "" || o.Dir == "" {
		return nil, errors.New("harness: Bin and Dir are required")
	}
	if len(o.Countries) == 0 {
		o.Countries = []string{"RO"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.PollInterval, 500*time.Millisecond)
	def(&o.AckWait, 10*time.Second)
	def(&o.AccessTTL, 5*time.Minute)
	def(&o.RefreshTTL, 30*time.Minute)
	if o.MaxQueued == 0 {
		o.MaxQueued = 2
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	s := &Stack{opts: o}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel

	var err error
	s.OIDC, err = oidc.New(oidc.Config{
		Realm: Realm, Clients: map[string]string{ClientID: ClientSecret},
		Users: map[string]string{User: Password}, AccessTTL: o.AccessTTL, RefreshTTL: o.RefreshTTL,
	})
	if err != nil {
		return nil, err
	}
	apiOpts := o.API
	apiOpts.Verify = func(tok string) error { _, err := s.OIDC.Verify(tok); return err }
	apiOpts.DevEndpoints, apiOpts.ClockOffset, apiOpts.Logger = true, o.APIClockOffset, o.Log.Named("api")
	s.API = smsapi.New(apiOpts)
	go s.API.Run(runCtx) //nolint:errcheck // ends with runCtx

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.BaseURL = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/realms/", s.OIDC.Handler())
	mux.Handle("/", s.API)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Shutdown

	s.Sim = modemsim.New(o.Sim)
	s.closers = append(s.closers, s.Sim)
	s.ModemLink = filepath.Join(o.Dir, "ttyMODEM")
	if _, err := s.Sim.ServePTY(s.ModemLink); err != nil {
		s.Close()
		return nil, err
	}

	if err := s.buildProcs(); err != nil {
		s.Close()
		return nil, err
	}
	if o.NoServices {
		return s, nil
	}
	if err := s.Poller.Start(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Modem.Start(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.WaitModemReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) buildProcs() error {
	o := s.opts
	natsPort, err := freePort()
	if err != nil {
		return err
	}
	pHTTP, err := freePort()
	if err != nil {
		return err
	}
	mHTTP, err := freePort()
	if err != nil {
		return err
	}
	s.PollerHTTP = "127.0.0.1:" + strconv.Itoa(pHTTP)
	s.NATSURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	if o.BrokerTLS != nil {
		s.NATSURL = "tls://127.0.0.1:" + strconv.Itoa(natsPort)
	}
	s.ModemHTTP = "127.0.0.1:" + strconv.Itoa(mHTTP)
	logTo := func(name string) (io.Writer, error) {
		if o.Logs != nil {
			return o.Logs, nil
		}
		f, err := os.OpenFile(filepath.Join(o.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, f)
		return f, nil
	}
	pOut, err := logTo("poller")
	if err != nil {
		return err
	}
	mOut, err := logTo("modem")
	if err != nil {
		return err
	}
	common := []string{"LOG_LEVEL=" + o.LogLevel, "LOG_FORMAT=json", "NATS_USER=" + NATSUser, "NATS_PASSWORD=" + NATSPassword}
	penv := append(append([]string{}, common...),
		"SMS_API_URL="+s.BaseURL,
		"SMS_PROVIDER_NAME=devstack-gateway",
		"SMS_COUNTRIES="+strings.Join(o.Countries, ","),
		"POLL_INTERVAL="+o.PollInterval.String(),
		"KEYCLOAK_URL="+s.BaseURL,
		"KEYCLOAK_REALM="+Realm,
		"KEYCLOAK_CLIENT_ID="+ClientID,
		"KEYCLOAK_CLIENT_SECRET="+ClientSecret,
		"KEYCLOAK_USER="+User,
		"KEYCLOAK_PASSWORD="+Password,
		"NATS_LISTEN=127.0.0.1:"+strconv.Itoa(natsPort),
		"NATS_STORE_DIR="+filepath.Join(o.Dir, "jetstream"),
		"HTTP_ADDR="+s.PollerHTTP,
		"JOB_ACK_WAIT="+o.AckWait.String(),
		"MAX_QUEUED_JOBS="+strconv.Itoa(o.MaxQueued),
	)
	mcommon := common
	if t := o.BrokerTLS; t != nil {
		penv = append(penv, "NATS_TLS_CERT="+t.CertFile, "NATS_TLS_KEY="+t.KeyFile)
		mcommon = append(append([]string{}, common...), "NATS_CA="+t.CAFile)
	}
	menv := append(append([]string{}, mcommon...),
		"MODEM_DEVICE="+s.ModemLink,
		"MODEM_PIN="+o.Sim.PIN,
		"MODEM_TIMEOUT=5s",
		"MODEM_SEND_TIMEOUT=30s",
		"MODEM_KEEPALIVE=5s",
		"NATS_URL="+s.NATSURL,
		"MODEM_DATA_DIR="+filepath.Join(o.Dir, "modem"),
		"HTTP_ADDR="+s.ModemHTTP,
	)
	s.Poller = newProc("sms-poller", filepath.Join(o.Bin, "sms-poller"), append(penv, o.PollerEnv...), pOut)
	s.Modem = newProc("sms-modem", filepath.Join(o.Bin, "sms-modem"), append(menv, o.ModemEnv...), mOut)
	s.menv = mcommon
	return nil
}

// ExtraModem is one more sms-modem on its own simulated modem, sharing the
// poller's broker and the modem user.
type ExtraModem struct {
	ID   string // its MODEM_ID
	Sim  *modemsim.Sim
	Proc *Proc
	HTTP string // its /readyz and /metrics
}

// AddModem starts another sms-modem named id (MODEM_ID) on its own
// simulator, with its own data directory and log (modem-<id>.log), and
// waits until it is ready. env adds KEY=VALUE settings (MODEM_COUNTRIES,
// MODEM_RATE_LIMIT, ...).
func (s *Stack) AddModem(ctx context.Context, id string, sim modemsim.Config, env ...string) (*ExtraModem, error) {
	o := s.opts
	m := &ExtraModem{ID: id, Sim: modemsim.New(sim)}
	s.closers = append(s.closers, m.Sim)
	link := filepath.Join(o.Dir, "ttyMODEM-"+id)
	if _, err := m.Sim.ServePTY(link); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m.HTTP = "127.0.0.1:" + strconv.Itoa(port)
	var out io.Writer = o.Logs
	if out == nil {
		f, err := os.OpenFile(filepath.Join(o.Dir, "modem-"+id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, f)
		out = f
	}
	env = append(append(append([]string{}, s.menv...),
		"MODEM_ID="+id,
		"MODEM_DEVICE="+link,
		"MODEM_PIN="+sim.PIN,
		"MODEM_TIMEOUT=5s",
		"MODEM_SEND_TIMEOUT=30s",
		"MODEM_KEEPALIVE=5s",
		"NATS_URL="+s.NATSURL,
		"MODEM_DATA_DIR="+filepath.Join(o.Dir, "modem-"+id),
		"HTTP_ADDR="+m.HTTP,
	), env...)
	m.Proc = newProc("sms-modem-"+id, filepath.Join(o.Bin, "sms-modem"), env, out)
	if err := m.Proc.Start(); err != nil {
		return nil, err
	}
	s.Modems = append(s.Modems, m)
	return m, waitHTTP(ctx, m.HTTP, "/readyz", m.Proc)
}

// Dir is the stack's working directory: stores, ledger and logs.
func (s *Stack) Dir() string { return s.opts.Dir }

// WaitModemReady waits until the modem's /readyz answers 200.
func (s *Stack) WaitModemReady(ctx context.Context) error {
	return waitHTTP(ctx, s.ModemHTTP, "/readyz", s.Modem)
}

// WaitPollerReady waits until the poller's /readyz answers 200.
func (s *Stack) WaitPollerReady(ctx context.Context) error {
	return waitHTTP(ctx, s.PollerHTTP, "/readyz", s.Poller)
}

// waitHTTP polls a health endpoint: the processes are separate, so there is
// no event to wait on, only an observable condition.
func waitHTTP(ctx context.Context, addr, path string, p *Proc) error {
	for {
		err := health.Probe(addr, path, time.Second)
		if err == nil {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("%s is not running (last probe: %v)", p.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s%s: %w (last probe: %v)", addr, path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Seed queues one SMS upstream and returns its id.
func (s *Stack) Seed(m smsapi.SMS) string { return s.API.Seed(m) }

// WaitFinal waits until every SMS in ids has a final status. It checks
// each record once per state change and forgets the finished ones, so a
// large batch does not slow the API it is watching.
func (s *Stack) WaitFinal(ctx context.Context, ids []string) error {
	remaining := make(map[string]bool, len(ids))
	for _, id := range ids {
		remaining[strings.ToLower(id)] = true
	}
	return s.API.WaitFor(ctx, func(v *smsapi.View) bool {
		for _, m := range v.All() {
			if remaining[m.ID] && m.Status.Final() {
				delete(remaining, m.ID)
			}
		}
		return len(remaining) == 0
	})
}

// Pending lists the ids among ids that are not final yet, for diagnostics.
func (s *Stack) Pending(ids []string) []string {
	var out []string
	for _, id := range ids {
		if m, ok := s.API.Get(id); !ok || !m.Status.Final() {
			st := schema.Status(-1)
			if ok {
				st = m.Status
			}
			out = append(out, id+"="+st.String())
		}
	}
	return out
}

// Close stops everything. Services get SIGTERM first.
func (s *Stack) Close() {
	procs := []*Proc{s.Modem}
	for _, m := range s.Modems {
		procs = append(procs, m.Proc)
	}
	for _, p := range append(procs, s.Poller) {
		if p != nil {
			_ = p.Stop()
		}
	}
	if s.srv != nil {
		_ = s.srv.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i].Close()
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
