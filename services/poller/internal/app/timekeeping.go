package app

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/clock"
)

// skewWarn is how far the local clock may be off the API's before it is
// worth a warning; below it, HTTP dates' one-second resolution dominates.
const skewWarn = 5 * time.Second

// apiClock feeds the trusted clock from the SMS API's Date headers and
// tells the operator when the Pi's own clock is off.
type apiClock struct {
	clk *clock.Clock
	log *zap.Logger

	mu       sync.Mutex
	warned   time.Duration // skew of the last warning (0: none)
	warnedAt time.Time
}

func newAPIClock(log *zap.Logger, reg prometheus.Registerer) *apiClock {
	c := &apiClock{clk: clock.New(nil), log: log}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sms_poller_clock_skew_seconds",
			Help: "The SMS API's time minus the local clock (positive: the local clock is behind); 0 until the API answered.",
		}, func() float64 {
			skew, _ := c.clk.Skew()
			return skew.Seconds()
		}))
	}
	return c
}

// observe is the SMS API client's ServerTime hook. An HTTP date is the
// server's time truncated to the second, read somewhere between sending the
// request and receiving the answer: the best estimate is half a second
// later, at the midpoint.
func (c *apiClock) observe(date, sent, received time.Time) {
	c.clk.Observe(date.Add(500*time.Millisecond), sent.Add(received.Sub(sent)/2))
	skew, ok := c.clk.Skew()
	if !ok || (skew < skewWarn && skew > -skewWarn) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := skew - c.warned; d < skewWarn && d > -skewWarn && time.Since(c.warnedAt) < time.Hour {
		return // said already
	}
	c.warned, c.warnedAt = skew, time.Now()
	c.log.Warn("the local clock is off the SMS API's; every TTL decision uses the API's time",
		zap.Duration("skew", skew.Round(100*time.Millisecond)), zap.Bool("kernel_synchronised", clock.KernelSynced()))
}
