package bench

import (
	"errors"
	"math"
	"slices"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// ErrNoData means a computation had nothing to work on: a run that sent
// nothing, or a window of zero length.
var ErrNoData = errors.New("bench: no data")

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of ds:
// always one of the samples, so a median of two is the lower one.
func Percentile(ds []time.Duration, p float64) (time.Duration, error) {
	if len(ds) == 0 || p <= 0 || p > 100 {
		return 0, ErrNoData
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1], nil
}

// Mean returns the arithmetic mean of ds.
func Mean(ds []time.Duration) (time.Duration, error) {
	if len(ds) == 0 {
		return 0, ErrNoData
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds)), nil
}

// Throughput is n items over the window from first to last, per second.
func Throughput(n int, first, last time.Time) (float64, error) {
	w := last.Sub(first)
	if n <= 0 || w <= 0 {
		return 0, ErrNoData
	}
	return float64(n) / w.Seconds(), nil
}

// Utilisation is the share of a window the modem spent inside AT+CMGS:
// busy is the simulator's time from each Ctrl-Z to its answer, the window
// runs from the first AT+CMGS line to the last answer.
func Utilisation(busy time.Duration, first, last time.Time) (float64, error) {
	w := last.Sub(first)
	if w <= 0 {
		return 0, ErrNoData
	}
	return busy.Seconds() / w.Seconds(), nil
}

// Lifecycle is when the API stand-in saw one SMS claimed and confirmed.
type Lifecycle struct {
	Claimed, Sent time.Time
}

// LifecycleOf reads an SMS's history: the first Pending→Entrusted (the
// claim) and the last Entrusted→Sent (the confirmed PATCH). ok is false
// when either is missing.
func LifecycleOf(h []smsapi.Transition) (l Lifecycle, ok bool) {
	for _, t := range h {
		switch {
		case t.From == schema.StatusPending && t.To == schema.StatusEntrusted && l.Claimed.IsZero():
			l.Claimed = t.At
		case t.From == schema.StatusEntrusted && t.To == schema.StatusSent:
			l.Sent = t.At
		}
	}
	return l, !l.Claimed.IsZero() && !l.Sent.IsZero()
}

// Span returns the earliest claim, the latest confirmation and each SMS's
// claim-to-confirmation time.
func Span(ls []Lifecycle) (first, last time.Time, each []time.Duration, err error) {
	if len(ls) == 0 {
		return first, last, nil, ErrNoData
	}
	first, last = ls[0].Claimed, ls[0].Sent
	each = make([]time.Duration, len(ls))
	for i, l := range ls {
		if l.Claimed.Before(first) {
			first = l.Claimed
		}
		if l.Sent.After(last) {
			last = l.Sent
		}
		each[i] = l.Sent.Sub(l.Claimed)
	}
	return first, last, each, nil
}

// ms converts a duration to milliseconds for the table.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
