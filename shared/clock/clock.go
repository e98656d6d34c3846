// Package clock is the time both services trust for TTL decisions. A
// Raspberry Pi has no real-time clock: it boots with the time it last saved
// and may run for hours before NTP corrects it, or never if the uplink is
// down. So the wall clock is used only when the kernel says it is
// synchronised; otherwise the time comes from a reference (the SMS API's
// Date header on the poller, the poller's answer on the modem), carried
// forward on the monotonic clock so a wall-clock step cannot move it.
package clock

import (
	"errors"
	"sync"
	"time"
)

// ErrUntrusted means there is no reference yet and the kernel does not
// consider its clock synchronised: nothing may be sent on such a time.
var ErrUntrusted = errors.New("no trustworthy time: no reference yet and the system clock is not synchronised")

// Source says where a reading came from.
type Source string

const (
	SourceReference Source = "reference" // an observed reference (API Date header, the poller)
	SourceSystem    Source = "system"    // the wall clock, which the kernel says is synchronised
)

// Tolerance is how far a new observation may disagree with the current
// estimate before it replaces it. HTTP dates have one-second resolution, so
// samples jitter by up to a second; keeping the older sample inside that
// band keeps the trusted time from stepping back and forth.
const Tolerance = time.Second

// Clock is safe for concurrent use. The zero value is not usable; use New.
type Clock struct {
	synced func() bool
	now    func() time.Time // local clock with a monotonic reading

	mu  sync.Mutex
	ref time.Time // reference time at the sample
	at  time.Time // local reading (monotonic) at the sample
}

// New returns a clock. synced reports whether the kernel's clock is
// synchronised (nil: KernelSynced).
func New(synced func() bool) *Clock {
	if synced == nil {
		synced = KernelSynced
	}
	return &Clock{synced: synced, now: time.Now}
}

// Observe records that the reference read ref at the local instant at, which
// must be a time.Now() reading (with its monotonic part). It reports whether
// the sample replaced the previous one.
func (c *Clock) Observe(ref, at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ref.IsZero() {
		est := c.ref.Add(at.Sub(c.at))
		if d := ref.Sub(est); d > -Tolerance && d < Tolerance {
			return false
		}
	}
	c.ref, c.at = ref, at
	return true
}

// Now returns the trusted time and where it came from.
func (c *Clock) Now() (time.Time, Source, error) {
	local := c.now()
	c.mu.Lock()
	ref, at := c.ref, c.at
	c.mu.Unlock()
	if !ref.IsZero() {
		return ref.Add(local.Sub(at)), SourceReference, nil
	}
	if c.synced() {
		return local, SourceSystem, nil
	}
	return time.Time{}, "", ErrUntrusted
}

// Skew is how far the local wall clock is from the reference (positive: the
// local clock is behind). ok is false without a reference.
func (c *Clock) Skew() (skew time.Duration, ok bool) {
	local := c.now()
	c.mu.Lock()
	ref, at := c.ref, c.at
	c.mu.Unlock()
	if ref.IsZero() {
		return 0, false
	}
	return ref.Add(local.Sub(at)).Sub(local.Round(0)), true
}
