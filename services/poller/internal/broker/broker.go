// Package broker runs the nats-server with JetStream that the poller embeds
// and owns the stream and consumer topology the modem binds to. The modem
// reaches it over TCP (TLS when Config.TLS is set) with a least-privilege
// user, the poller through an in-process pipe with a per-start internal
// user, which needs no TLS. Every write is fsynced,
// store limits are fixed rather than sized from free disk, and a fatal
// server error (also one at run time, such as JetStream shut down by the
// server) closes Done and shows in Err instead of exiting the process.
package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// Defaults applied to zero Config fields.
const (
	DefaultListen      = "0.0.0.0:4222"
	DefaultMaxStore    = 352 << 20 // four 64 MB stores, the 16 MB events stream and attempts bucket, headroom
	DefaultMaxMemory   = 16 << 20
	DefaultJobsMaxMsgs = 1000
	DefaultAckWait     = 2 * time.Minute
	DefaultMaxDeliver  = 5
	DefaultDeadJobScan = time.Minute
	DefaultWatchEvery  = 5 * time.Second
)

const (
	serverName   = "sms-poller"
	internalUser = "poller"
	// internalInbox keeps the poller's replies (job payloads fetched for
	// dead-job handling, stream info) out of the modem user's _INBOX.> view.
	internalInbox = "_POLLER_INBOX"
	readyTimeout  = 10 * time.Second
	drainTimeout  = 5 * time.Second
	flushTimeout  = 5 * time.Second
	// tlsTimeout bounds a client's TLS handshake; above the server's 2 s
	// default for a modem on another Pi behind Wi-Fi or a VPN.
	tlsTimeout = 5 * time.Second
)

var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("broker: invalid config")
	// ErrNotReady reports a server that did not accept connections in time.
	ErrNotReady = errors.New("broker: server not ready")
	// ErrFatal reports a fatal server error (listener or JetStream failed).
	ErrFatal = errors.New("broker: fatal server error")
	// ErrJetStreamDisabled reports that JetStream is not running, e.g. it
	// failed to start or was shut down after running out of storage.
	ErrJetStreamDisabled = errors.New("broker: JetStream disabled")
	// ErrShutdown reports use of a broker after Shutdown.
	ErrShutdown = errors.New("broker: shut down")
)

// Config configures the embedded broker. Zero values take the defaults above.
type Config struct {
	// Listen is host:port for modem clients; port -1 picks a free port.
	Listen string
	// TLS, when set, makes the client listener require TLS with this
	// server configuration (NATS_TLS_CERT, NATS_TLS_KEY). The in-process
	// connection of the poller itself stays plain.
	TLS *tls.Config
	// StoreDir holds the file store; the server appends /jetstream.
	StoreDir string
	// ModemUser and ModemPassword are the credentials the modem connects
	// with (NATS_USER, NATS_PASSWORD). Both are required.
	ModemUser, ModemPassword string
	// MaxStore and MaxMemory cap JetStream file and memory storage. They are
	// always positive: a zero from code would let the server size the store
	// from free disk and let a runaway stream fill the SD card.
	MaxStore, MaxMemory int64
	// JobsMaxMsgs bounds SMS_JOBS; publishing beyond it fails.
	JobsMaxMsgs int64
	// Countries are the SMS_COUNTRIES: each gets a jobs consumer
	// (modem-<CC>) that the modems serving it pull from. At least one.
	Countries []string
	// AckWait and MaxDeliver configure the jobs consumers.
	AckWait    time.Duration
	MaxDeliver int
	// DeadJobScan is how often WatchDeadJobs rescans for jobs whose
	// MAX_DELIVERIES advisory was missed or whose handling failed.
	DeadJobScan time.Duration
	// WatchEvery is how often the running broker checks that JetStream is
	// still enabled; the server turns it off by itself when the disk is
	// full or the store stops being writable.
	WatchEvery time.Duration
	Log        *zap.Logger
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxStore <= 0 {
		c.MaxStore = DefaultMaxStore
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = DefaultMaxMemory
	}
	if c.JobsMaxMsgs <= 0 {
		c.JobsMaxMsgs = DefaultJobsMaxMsgs
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.DeadJobScan <= 0 {
		c.DeadJobScan = DefaultDeadJobScan
	}
	if c.WatchEvery <= 0 {
		c.WatchEvery = DefaultWatchEvery
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
}

func (c *Config) validate() error {
	switch {
	case c.ModemUser == "":
		return fmt.Errorf("%w: modem user is empty", ErrConfig)
	case c.ModemUser == internalUser:
		return fmt.Errorf("%w: modem user %q is reserved", ErrConfig, internalUser)
	case c.ModemPassword == "":
		return fmt.Errorf("%w: modem password is empty", ErrConfig)
	case len(c.Countries) == 0:
		return fmt.Errorf("%w: no countries", ErrConfig)
	case slices.ContainsFunc(c.Countries, func(cc string) bool { return !schema.ValidCountry(cc) }):
		return fmt.Errorf("%w: countries %q: want two upper-case letters each", ErrConfig, c.Countries)
	case c.StoreDir == "":
		// An empty StoreDir silently falls back to os.TempDir().
		return fmt.Errorf("%w: store dir is empty", ErrConfig)
	}
	return nil
}

// Broker is a running embedded nats-server with its topology in place.
type Broker struct {
	cfg    Config
	log    *zap.Logger
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	jobs   jetstream.Stream
	claims jetstream.KeyValue
	url    string

	ncClosed chan struct{}

	done      chan struct{} // closed on a fatal error or Shutdown
	doneOnce  sync.Once
	fatalMsg  atomic.Pointer[string]
	shutdown  atomic.Bool
	closeOnce sync.Once
}

// Start runs the server, waits until it accepts connections with JetStream
// enabled, connects the in-process client and creates or updates the
// streams and consumers. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	users, internalPass, err := buildUsers(cfg.ModemUser, cfg.ModemPassword)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:             serverName,
		Host:                   host,
		Port:                   port,
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               cfg.StoreDir,
		SyncAlways:             true,
		JetStreamMaxStore:      cfg.MaxStore,
		JetStreamMaxMemory:     cfg.MaxMemory,
		DisableJetStreamBanner: true,
		Users:                  users,
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		opts.TLSTimeout = tlsTimeout.Seconds()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: new server: %w", ErrConfig, err)
	}
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Log,
		srv:      srv,
		ncClosed: make(chan struct{}),
		done:     make(chan struct{}),
	}
	nlog := cfg.Log.Named("nats")
	srv.SetLoggerV2(serverLogger{l: nlog.Sugar(), onFatal: b.fatal}, nlog.Core().Enabled(zapcore.DebugLevel), false, false)

	go srv.Start()
	if err := b.init(ctx, host, internalPass); err != nil {
		b.Shutdown()
		return nil, err
	}
	b.log.Info("broker started", zap.String("listen", srv.Addr().String()), zap.Bool("tls", cfg.TLS != nil), zap.String("store", cfg.StoreDir))
	go b.watch()
	return b, nil
}

// watch turns a broker that stops working under the poller into a fatal
// error: JetStream shut down by the server (it does that on a full disk or
// a store that is no longer writable, logging why) or the in-process
// connection closed. It ends when Done closes.
func (b *Broker) watch() {
	t := time.NewTicker(b.cfg.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-b.ncClosed:
			if !b.shutdown.Load() {
				b.fatal("the in-process broker connection closed")
			}
			return
		case <-t.C:
			if !b.shutdown.Load() && !b.srv.JetStreamEnabled() {
				b.fatal("JetStream was shut down by the server (disk full or store not writable: see the errors logged before)")
				return
			}
		}
	}
}

func (b *Broker) init(ctx context.Context, host, internalPass string) error {
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	addr, ok := b.srv.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("%w: no TCP listener", ErrNotReady)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "nats://"
	if b.cfg.TLS != nil {
		scheme = "tls://"
	}
	b.url = scheme + net.JoinHostPort(host, strconv.Itoa(addr.Port))

	nc, err := nats.Connect("",
		nats.InProcessServer(b.srv),
		nats.UserInfo(internalUser, internalPass),
		nats.Name(serverName+"-internal"),
		nats.CustomInboxPrefix(internalInbox),
		nats.DrainTimeout(drainTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(b.ncClosed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Warn("internal nats client error", zap.String("subject", subject), zap.Error(err))
		}),
	)
	if err != nil {
		return fmt.Errorf("connect in-process: %w", err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream client: %w", err)
	}
	return b.ensureTopology(ctx)
}

// waitReady polls in short steps so a listener error or a failed JetStream
// start (both reported only through Fatalf) ends the wait at once.
func (b *Broker) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for !b.srv.ReadyForConnections(100 * time.Millisecond) {
		if err := b.fatalErr(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for broker: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s", ErrNotReady, readyTimeout)
		}
	}
	if err := b.fatalErr(); err != nil {
		return err
	}
	// JetStream starts synchronously before the accept loop, so its outcome
	// is final once the listener is up.
	if !b.srv.JetStreamEnabled() {
		return ErrJetStreamDisabled
	}
	return nil
}

func (b *Broker) fatal(msg string) {
	b.fatalMsg.CompareAndSwap(nil, &msg)
	b.doneOnce.Do(func() { close(b.done) })
}

func (b *Broker) fatalErr() error {
	if msg := b.fatalMsg.Load(); msg != nil {
		return fmt.Errorf("%w: %s", ErrFatal, *msg)
	}
	return nil
}

// Conn returns the in-process client with full permissions.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream client on the in-process connection.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Claims returns the bucket of claim records.
func (b *Broker) Claims() jetstream.KeyValue { return b.claims }

// ClientURL is the URL a client on this host reaches the broker at:
// tls://host:port when the listener requires TLS, else nats://host:port.
func (b *Broker) ClientURL() string { return b.url }

// Done is closed when the broker stops serving: after Shutdown or a fatal
// server error. The poller stops on it, with Err as the reason.
func (b *Broker) Done() <-chan struct{} { return b.done }

// Err is the fatal error that stopped the broker (ErrFatal), or nil while
// it runs and after a clean Shutdown.
func (b *Broker) Err() error { return b.fatalErr() }

// Healthy reports nil while the server runs with JetStream enabled. Running
// out of storage makes the server shut JetStream down, which shows here.
func (b *Broker) Healthy() error {
	if b.shutdown.Load() {
		return ErrShutdown
	}
	if err := b.fatalErr(); err != nil {
		return err
	}
	if !b.srv.JetStreamEnabled() {
		return ErrJetStreamDisabled
	}
	if hs := b.srv.Healthz(&server.HealthzOptions{JSEnabledOnly: true}); hs.Error != "" {
		return fmt.Errorf("%w: healthz: %s", ErrJetStreamDisabled, hs.Error)
	}
	return nil
}

// JobsPending returns the number of jobs held in SMS_JOBS: queued, in
// flight, or dead and not yet reaped.
func (b *Broker) JobsPending(ctx context.Context) (int, error) {
	info, err := b.jobs.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jobs pending: %w", err)
	}
	return int(info.State.Msgs), nil
}

// JobsByCountry returns the number of jobs held in SMS_JOBS per country
// (the last token of sms.jobs.<CC>): queued, in flight, or dead and not yet
// reaped.
func (b *Broker) JobsByCountry(ctx context.Context) (map[string]int, error) {
	info, err := b.jobs.Info(ctx, jetstream.WithSubjectFilter(schema.JobsFilter))
	if err != nil {
		return nil, fmt.Errorf("jobs by country: %w", err)
	}
	out := make(map[string]int, len(info.State.Subjects))
	for subject, n := range info.State.Subjects {
		out[strings.TrimPrefix(subject, schema.JobsSubject+".")] += int(n)
	}
	return out, nil
}

// Shutdown drains the in-process client so outstanding publishes get their
// acks, then stops the server, which persists stream and consumer state.
// It is safe to call more than once.
func (b *Broker) Shutdown() {
	b.closeOnce.Do(func() {
		b.shutdown.Store(true)
		b.doneOnce.Do(func() { close(b.done) })
		if b.nc != nil {
			if err := b.nc.Drain(); err != nil {
				b.log.Warn("drain in-process client", zap.Error(err))
				b.nc.Close()
			}
			<-b.ncClosed // bounded by the drain timeout
		}
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.log.Info("broker stopped")
	})
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("%w: listen %q: %w", ErrConfig, listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < server.RANDOM_PORT || port > 65535 {
		return "", 0, fmt.Errorf("%w: listen %q: bad port", ErrConfig, listen)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// buildUsers returns the internal user (full permissions, fresh random
// password) and the modem user (least privilege). Passwords are handed to
// the server as bcrypt hashes at minimum cost: the hashes never leave this
// process, so cost buys nothing, and the server then neither keeps the
// plaintext nor warns about it on every start.
func buildUsers(modemUser, modemPass string) ([]*server.User, string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("internal password: %w", err)
	}
	internalPass := base64.RawURLEncoding.EncodeToString(raw)
	internalHash, err := bcrypt.GenerateFromPassword([]byte(internalPass), bcrypt.MinCost)
	if err != nil {
		return nil, "", fmt.Errorf("hash internal password: %w", err)
	}
	modemHash, err := bcrypt.GenerateFromPassword([]byte(modemPass), bcrypt.MinCost)
	if err != nil {
		return nil, "", fmt.Errorf("%w: modem password: %w", ErrConfig, err)
	}
	return []*server.User{
		{Username: internalUser, Password: string(internalHash)},
		{Username: modemUser, Password: string(modemHash), Permissions: modemPermissions()},
	}, internalPass, nil
}

// modemPermissions allows exactly what the modem's jetstream client uses:
// list the jobs consumers, bind to and pull from them, ack (including
// DoubleAck, InProgress, Nak, Term), publish results, events and
// heartbeats, hear heartbeats and job wake-ups, ask the poller for the
// time, and receive replies. The consumer token of the jobs API subjects
// is a wildcard (NATS has no partial-token match for modem-<CC>): every
// consumer of SMS_JOBS is a jobs consumer, the poller creates no other and
// the modem can create none. It can neither create nor inspect any other
// stream, consumer or KV bucket.
func modemPermissions() *server.Permissions {
	jobs := schema.JobsStream
	attempts := "KV_" + schema.AttemptsBucket
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			fmt.Sprintf(server.JSApiConsumersT, jobs),
			fmt.Sprintf(server.JSApiRequestNextT, jobs, "*"),
			fmt.Sprintf(server.JSApiConsumerInfoT, jobs, "*"),
			"$JS.ACK." + jobs + ".*.>",
			schema.WakeFilter, // a job handed back is waiting again
			schema.ResultsFilter,
			schema.StatusFilter, // sms.modem.status.<MODEM_ID>
			schema.ClockSubject, // requests; the answer comes to its inbox
			schema.EventsFilter, // incoming SMS and delivery reports
			// The attempting record every modem sees: bind, create, read.
			fmt.Sprintf(server.JSApiStreamInfoT, attempts),
			"$KV." + schema.AttemptsBucket + ".>",
			fmt.Sprintf(server.JSDirectGetLastBySubjectT, attempts, "$KV."+schema.AttemptsBucket+".>"),
		}},
		// Heartbeats too: a modem hears another one beating with its
		// MODEM_ID and refuses to share it.
		Subscribe: &server.SubjectPermission{Allow: []string{nats.InboxPrefix + ">", schema.StatusFilter, schema.WakeFilter}},
	}
}
