package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/backoff"
)

// Pacing of every broker connection attempt: the first dial, nats.go's own
// reconnects and re-dials after a closed connection. A restarted poller is
// found again within about redialMax.
const (
	redialMin = time.Second
	redialMax = 10 * time.Second
	// repeatLogEvery limits how often an unchanged connection error is
	// logged again at WARN/ERROR; repeats in between go to DEBUG.
	repeatLogEvery = time.Minute
)

// link is the modem's connection to the poller's broker. It never gives up:
// the first dial and re-dials retry with back-off until ctx ends, and the
// connection itself reconnects forever, also after authorization errors
// (which nats.go would otherwise give up on after the second). It knows
// whether a working connection exists right now, and since when not.
type link struct {
	cfg Config
	log *zap.Logger

	reconnected chan struct{} // poked on every (re)connect: heartbeat at once
	closed      chan struct{} // poked when a connection closed for good

	mu        sync.Mutex
	nc        *nats.Conn
	stopping  bool // Close was called: closes are ours from now on
	up        bool
	downSince time.Time
	lastErr   error
	logged    string // last error logged at WARN/ERROR, and when
	loggedAt  time.Time
	bo        *backoff.Backoff // nats.go's reconnect delays

	connected  prometheus.Gauge
	reconnects prometheus.Counter
	failures   *prometheus.CounterVec
}

func newLink(cfg Config, log *zap.Logger, reg prometheus.Registerer) *link {
	l := &link{
		cfg: cfg, log: log,
		reconnected: make(chan struct{}, 1),
		closed:      make(chan struct{}, 1),
		downSince:   time.Now(),
		lastErr:     errors.New("connecting"),
		bo:          backoff.New(redialMin, redialMax),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sms_modem_broker_connected", Help: "1 while an authorized connection to the poller's broker exists.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_modem_broker_reconnects_total", Help: "Broker connections re-established after one was lost.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_broker_connect_failures_total", Help: "Failed broker connection attempts; reason auth = credentials refused, tls = TLS handshake or the poller's certificate failed.",
		}, []string{"reason"}),
	}
	l.failures.WithLabelValues("auth")
	l.failures.WithLabelValues("tls")
	l.failures.WithLabelValues("other")
	if reg != nil {
		reg.MustRegister(l.connected, l.reconnects, l.failures)
	}
	return l
}

// Ready is nil while an authorized connection exists, else why not.
func (l *link) Ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up {
		return nil
	}
	return fmt.Errorf("no connection to %s for %s: %w", l.cfg.NATSURL, time.Since(l.downSince).Round(time.Second), l.lastErr)
}

// Healthy turns red once there has been no connection for longer than grace.
func (l *link) Healthy(grace time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up && time.Since(l.downSince) > grace {
		return fmt.Errorf("no broker connection for %s (longer than MODEM_UNREADY_GRACE): %v", time.Since(l.downSince).Round(time.Second), l.lastErr)
	}
	return nil
}

// Conn returns the current connection (nil before the first dial).
func (l *link) Conn() *nats.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nc
}

// Close drains the current connection; closes from now on are ours.
func (l *link) Close() {
	l.mu.Lock()
	l.stopping = true
	nc := l.nc
	l.mu.Unlock()
	if nc != nil {
		_ = nc.Drain()
	}
}

// dial connects, retrying with back-off until it succeeds or ctx ends. A
// re-dial after a closed connection counts as a reconnect.
func (l *link) dial(ctx context.Context, redial bool) (*nats.Conn, error) {
	b := backoff.New(redialMin, redialMax)
	for {
		nc, err := nats.Connect(l.cfg.NATSURL, l.options()...)
		if err == nil {
			l.mu.Lock()
			l.nc = nc
			l.mu.Unlock()
			if redial {
				l.reconnects.Inc()
			}
			l.setUp(nc)
			return nc, nil
		}
		l.failed(err)
		if !b.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

func (l *link) options() []nats.Option {
	opts := []nats.Option{
		nats.Name("sms-modem"),
		nats.UserInfo(l.cfg.NATSUser, l.cfg.NATSPass),
		nats.MaxReconnects(-1),
		// By default nats.go closes the connection for good after the
		// same authorization error twice; a poller restarted with the
		// right password must find us still trying.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(l.reconnectDelay),
		nats.PingInterval(20 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				err = errors.New("disconnected")
			}
			l.setDown(err)
			l.log.Warn("broker connection lost; reconnecting", zap.Error(err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			l.reconnects.Inc()
			l.setUp(c)
		}),
		// A failed dial while reconnecting (broker down, name unknown).
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { l.failed(err) }),
		// Authorization errors while reconnecting arrive here.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if isAuthErr(err) {
				l.failed(err)
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			l.log.Warn("broker error", zap.String("subject", subject), zap.Error(err))
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			l.mu.Lock()
			ours := l.stopping || (l.nc != nil && c != l.nc) // an older connection
			l.mu.Unlock()
			if ours {
				return
			}
			err := c.LastError()
			if err == nil {
				err = errors.New("connection closed")
			}
			l.setDown(err)
			l.log.Error("broker connection closed for good; dialling again", zap.Error(err))
			select {
			case l.closed <- struct{}{}:
			default:
			}
		}),
	}
	if l.cfg.NATSCA != "" {
		// Read on every TLS handshake: a corrected CA file is used by the
		// next attempt, without a restart.
		opts = append(opts, nats.RootCAs(l.cfg.NATSCA))
	}
	return opts
}

// reconnectDelay paces nats.go's reconnects with the shared back-off;
// attempts restarts at 1 after every successful connection.
func (l *link) reconnectDelay(attempts int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if attempts <= 1 {
		l.bo.Reset()
	}
	return l.bo.Next()
}

func (l *link) setUp(c *nats.Conn) {
	l.mu.Lock()
	was := l.up
	l.up, l.lastErr, l.logged = true, nil, ""
	down := time.Since(l.downSince)
	l.mu.Unlock()
	l.connected.Set(1)
	if !was {
		l.log.Info("broker connected", zap.String("url", c.ConnectedUrlRedacted()), zap.Duration("after", down.Round(time.Millisecond)))
	}
	select { // a restarted poller learns our state at once
	case l.reconnected <- struct{}{}:
	default:
	}
}

func (l *link) setDown(err error) {
	l.mu.Lock()
	if l.up {
		l.up, l.downSince = false, time.Now()
	}
	l.lastErr = err
	l.mu.Unlock()
	l.connected.Set(0)
}

// failed records a failed connection attempt: counted, shown in /readyz,
// and logged at ERROR (credentials refused, TLS failed) or WARN (anything
// else) when it is new or last logged a while ago.
func (l *link) failed(err error) {
	reason, lvl := "other", l.log.Warn
	if isAuthErr(err) {
		reason, lvl = "auth", l.log.Error
		err = fmt.Errorf("%w (the poller does not accept NATS_USER %q with this NATS_PASSWORD)", err, l.cfg.NATSUser)
	} else if hint := tlsHint(err, l.cfg); hint != "" {
		reason, lvl = "tls", l.log.Error
		err = fmt.Errorf("%w (%s)", err, hint)
	}
	l.failures.WithLabelValues(reason).Inc()
	l.setDown(err)
	l.mu.Lock()
	repeat := l.logged == err.Error() && time.Since(l.loggedAt) < repeatLogEvery
	if !repeat {
		l.logged, l.loggedAt = err.Error(), time.Now()
	}
	l.mu.Unlock()
	if repeat {
		lvl = l.log.Debug
	}
	lvl("cannot connect to the broker; retrying", zap.String("url", l.cfg.NATSURL), zap.String("reason", reason), zap.Error(err))
}

func isAuthErr(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// tlsHint says which setting to look at when err is a failed TLS
// connection to the poller, and is "" for any other error.
func tlsHint(err error, cfg Config) string {
	host := cfg.NATSURL
	if u, perr := url.Parse(cfg.NATSURL); perr == nil {
		host = u.Hostname()
	}
	if errors.Is(err, nats.ErrSecureConnWanted) {
		return "NATS_URL is tls:// but the poller's broker does not offer TLS: set NATS_TLS_CERT and NATS_TLS_KEY on the poller, or use nats://"
	}
	if unknown, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		switch {
		case cfg.NATSCA == "" && strings.HasPrefix(cfg.NATSURL, "nats://"):
			return "the poller's broker requires TLS: set NATS_URL=tls://" + host + ":port and NATS_CA to the CA that signed its NATS_TLS_CERT"
		case cfg.NATSCA == "":
			return "the poller's certificate is not signed by a CA this host trusts: set NATS_CA to the CA that signed its NATS_TLS_CERT"
		}
		issuer := ""
		if unknown.Cert != nil {
			issuer = " (it is issued by " + unknown.Cert.Issuer.String() + ")"
		}
		return "the poller's certificate is not signed by the CA in NATS_CA " + cfg.NATSCA + issuer
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return "the poller's certificate is not for " + host + ", the host in NATS_URL: its subject alternative names must include it"
	}
	if inv, ok := errors.AsType[x509.CertificateInvalidError](err); ok && inv.Reason == x509.Expired {
		return "the poller's certificate has expired or is not valid yet: renew NATS_TLS_CERT on the poller, or check the clocks"
	}
	if errors.Is(err, nats.ErrTLS) {
		return "the TLS handshake with the poller's broker failed: check NATS_URL, NATS_CA and the poller's NATS_TLS_CERT"
	}
	return ""
}
