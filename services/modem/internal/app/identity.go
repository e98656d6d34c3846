package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ratelimit"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// identity is the modem's name on the broker: MODEM_ID, else its IMEI
// once read. It listens to its own heartbeat subject: a beat from another
// process (another instance id) means two modems share the MODEM_ID, and
// this one takes no job until that beat has expired. The poller does the
// same on its side, so neither is claimed for.
type identity struct {
	fixed     string   // MODEM_ID
	instance  string   // random per process
	countries []string // MODEM_COUNTRIES, for the heartbeat; empty: any
	log       *zap.Logger
	info      *prometheus.GaugeVec

	onTake func() // a job was taken: beat at once, naming it

	mu            sync.Mutex
	held          string // ack subject of the job being handled
	id            string
	subConn       *nats.Conn
	sub           *nats.Subscription
	conflictUntil time.Time
}

func newIdentity(modemID string, log *zap.Logger, reg prometheus.Registerer) *identity {
	raw := make([]byte, 8)
	_, _ = rand.Read(raw)
	i := &identity{fixed: modemID, instance: hex.EncodeToString(raw), log: log,
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sms_modem_info", Help: "1, labelled with the MODEM_ID (default the IMEI) this modem uses on the broker.",
		}, []string{"modem_id"})}
	if reg != nil {
		reg.MustRegister(i.info)
	}
	return i
}

// resolve returns the id, taking the IMEI when MODEM_ID is not set; "" while
// neither is known.
func (i *identity) resolve(imei string) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.id == "" {
		switch {
		case i.fixed != "":
			i.id = i.fixed
		case schema.ValidModemID(imei):
			i.id = imei
		default:
			return ""
		}
		i.info.WithLabelValues(i.id).Set(1)
		i.log.Info("modem id on the broker", zap.String("MODEM_ID", i.id), zap.Bool("from_imei", i.fixed == ""))
	}
	return i.id
}

// hold is the sender's Holding hook: the job being handled now.
func (i *identity) hold(ackSubject string) {
	i.mu.Lock()
	i.held = ackSubject
	i.mu.Unlock()
	if ackSubject != "" && i.onTake != nil {
		i.onTake()
	}
}

func (i *identity) holding() string { i.mu.Lock(); defer i.mu.Unlock(); return i.held }

// watch listens to the id's heartbeat subject on nc (again after a re-dial
// replaced the connection).
func (i *identity) watch(nc *nats.Conn) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if nc == nil || i.id == "" || nc == i.subConn {
		return
	}
	if i.sub != nil {
		_ = i.sub.Unsubscribe()
	}
	sub, err := nc.Subscribe(schema.StatusSubjectFor(i.id), i.onBeat)
	if err != nil {
		i.log.Warn("cannot listen for modems with the same MODEM_ID", zap.Error(err))
		return
	}
	i.sub, i.subConn = sub, nc
}

func (i *identity) onBeat(m *nats.Msg) {
	st, err := schema.Decode[schema.ModemStatus](m.Data)
	if err != nil || st.Instance == i.instance {
		return
	}
	i.mu.Lock()
	was := time.Now().Before(i.conflictUntil)
	i.conflictUntil = time.Now().Add(max(time.Duration(st.ValidFor), heartbeatEvery))
	i.mu.Unlock()
	if !was {
		i.log.Error("another sms-modem uses the same MODEM_ID; taking no job until it stops. Give every modem its own MODEM_ID",
			zap.String("MODEM_ID", st.ID), zap.String("other_operator", st.Operator))
	}
}

// Ready is nil while this modem may take jobs under its id.
func (i *identity) Ready() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case i.id == "":
		return fmt.Errorf("no MODEM_ID set and the modem's IMEI not read yet")
	case time.Now().Before(i.conflictUntil):
		return fmt.Errorf("another sms-modem uses MODEM_ID=%s: give every modem its own MODEM_ID", i.id)
	}
	return nil
}

// gatedModem is the modem as the sender sees it: ready only while the
// modem is, no other process shares its MODEM_ID and MODEM_RATE_LIMIT
// leaves room for a part; every part submitted is counted first.
type gatedModem struct {
	*gsm.Modem
	id  *identity
	lim *ratelimit.Limiter
	now func() time.Time // the trusted time, else the local clock
	log *zap.Logger
}

// limitErr says until when MODEM_RATE_LIMIT allows no part, or nil.
func (g gatedModem) limitErr() error {
	if limited, until := g.lim.Limited(g.now()); limited {
		return fmt.Errorf("MODEM_RATE_LIMIT reached: next part at %s", until.UTC().Format(time.RFC3339))
	}
	return nil
}

func (g gatedModem) WaitReady(ctx context.Context) error {
	for {
		if err := g.Modem.WaitReady(ctx); err != nil {
			return err
		}
		wait := time.Second
		if g.id.Ready() == nil {
			limited, until := g.lim.Limited(g.now())
			if !limited {
				return nil
			}
			wait = min(max(until.Sub(g.now()), 10*time.Millisecond), time.Minute)
		}
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// Submit counts the part against MODEM_RATE_LIMIT before it leaves. A full
// window is gsm.ErrNotReady: nothing was written, and the sender waits in
// WaitReady until the window has room.
func (g gatedModem) Submit(ctx context.Context, tpduLen int, hexPDU string) (int, error) {
	ok, err := g.lim.Take(g.now())
	if err != nil {
		// Counted in memory all the same; only a restart could forget it.
		g.log.Error("rate limit log not written", zap.Error(err))
	}
	if !ok {
		return 0, gsm.ErrNotReady
	}
	return g.Modem.Submit(ctx, tpduLen, hexPDU)
}
