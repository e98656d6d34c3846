// Package ratelimit keeps a SIM within its carrier's limits: at most N SMS
// parts in any sliding window (MODEM_RATE_LIMIT, e.g. "10/m,300/h,1000/d").
// It is a log of the times parts were handed to the modem, kept under
// MODEM_DATA_DIR so a restart does not reset the count. golang.org/x/time/rate
// is a token bucket (a burst after idling can exceed a per-window limit)
// and keeps nothing across restarts, so it does not fit.
package ratelimit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/durable"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Window is one limit: at most Max parts in any Span.
type Window struct {
	Max  int
	Span time.Duration
}

func (w Window) String() string {
	switch w.Span {
	case time.Second:
		return strconv.Itoa(w.Max) + "/s"
	case time.Minute:
		return strconv.Itoa(w.Max) + "/m"
	case time.Hour:
		return strconv.Itoa(w.Max) + "/h"
	}
	return strconv.Itoa(w.Max) + "/d"
}

// maxPerWindow bounds one limit (and so the log): a day of a busy SIM.
const maxPerWindow = 100000

// Parse reads "6/m" or "10/m,300/h,1000/d" (units s, m, h, d). Empty is no
// limit.
func Parse(s string) ([]Window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var ws []Window
	for _, f := range strings.Split(s, ",") {
		n, unit, ok := strings.Cut(strings.TrimSpace(f), "/")
		max, err := strconv.Atoi(n)
		if !ok || err != nil || max < 1 || max > maxPerWindow {
			return nil, fmt.Errorf("%q: want a count from 1 to %d, a slash and s, m, h or d", f, maxPerWindow)
		}
		span, ok := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[unit]
		if !ok {
			return nil, fmt.Errorf("%q: the unit must be s, m, h or d", f)
		}
		if slices.ContainsFunc(ws, func(w Window) bool { return w.Span == span }) {
			return nil, fmt.Errorf("%q: a second limit per %s", f, unit)
		}
		ws = append(ws, Window{Max: max, Span: span})
	}
	return ws, nil
}

// FileName is the log's name under MODEM_DATA_DIR.
const FileName = "ratelimit.json"

// Limiter counts parts against its windows. The zero of windows allows
// everything.
type Limiter struct {
	windows []Window
	path    string

	mu   sync.Mutex
	sent []time.Time // ascending, within the longest window
}

// Open loads the log from dir (none yet is an empty log). A log that cannot
// be read is an error: starting with an empty one could exceed the limit.
func Open(dir string, windows []Window) (*Limiter, error) {
	l := &Limiter{windows: windows, path: filepath.Join(dir, FileName)}
	if len(windows) == 0 {
		return l, nil
	}
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("rate limit log: %w", err)
	}
	if err := json.Unmarshal(b, &l.sent); err != nil {
		return nil, fmt.Errorf("rate limit log %s is unreadable (%v); delete it only if the SIM sent nothing in the last day", l.path, err)
	}
	slices.SortFunc(l.sent, func(a, b time.Time) int { return a.Compare(b) })
	return l, nil
}

// Limited reports whether a part sent at now would exceed a window, and if
// so from when it would not.
func (l *Limiter) Limited(now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limitedLocked(now)
}

func (l *Limiter) limitedLocked(now time.Time) (bool, time.Time) {
	var until time.Time
	for _, w := range l.windows {
		in := l.inLocked(now, w)
		if len(in) >= w.Max {
			// The part that must leave the window first.
			free := in[len(in)-w.Max].Add(w.Span)
			if free.After(until) {
				until = free
			}
		}
	}
	return !until.IsZero(), until
}

// inLocked returns the parts sent within w before now.
func (l *Limiter) inLocked(now time.Time, w Window) []time.Time {
	i, _ := slices.BinarySearchFunc(l.sent, now.Add(-w.Span), func(t, target time.Time) int {
		if !t.After(target) {
			return -1
		}
		return 1
	})
	return l.sent[i:]
}

// Take records a part sent at now, unless it would exceed a window: then
// it returns false and records nothing. The log is written before Take
// returns true.
func (l *Limiter) Take(now time.Time) (bool, error) {
	if len(l.windows) == 0 {
		return true, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if limited, _ := l.limitedLocked(now); limited {
		return false, nil
	}
	longest := slices.MaxFunc(l.windows, func(a, b Window) int { return int(a.Span - b.Span) }).Span
	l.sent = append(l.inLocked(now, Window{Span: longest}), now)
	l.sent = slices.Clip(l.sent)
	b, _ := json.Marshal(l.sent)
	if err := durable.WriteFile(l.path, b); err != nil {
		return true, fmt.Errorf("rate limit log: %w", err)
	}
	return true, nil
}

// States reports every window's use at now.
func (l *Limiter) States(now time.Time) []schema.RateWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]schema.RateWindow, 0, len(l.windows))
	for _, w := range l.windows {
		out = append(out, schema.RateWindow{Window: w.String(), Used: len(l.inLocked(now, w)), Max: w.Max})
	}
	return out
}
