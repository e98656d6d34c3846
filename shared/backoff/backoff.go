// Package backoff is the one retry pacing both services use: exponential
// growth with full jitter, so restarted processes do not retry in lockstep,
// and sleeps that end early when their context does.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d or until ctx ends; it reports whether d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff doubles from Min to Max; each wait is a random duration in
// [cur/2, cur]. It is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// New returns a back-off starting at min and capped at max.
func New(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Reset starts over from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Next returns the next wait and advances.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	}
	d := b.cur/2 + time.Duration(rand.Int64N(int64(b.cur/2)+1))
	b.cur = min(b.cur*2, b.Max)
	return d
}

// Wait sleeps for the next wait; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }
