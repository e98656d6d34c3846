package clock

import (
	"errors"
	"testing"
	"time"
)

// fake drives the local clock by hand.
type fake struct{ t time.Time }

func (f *fake) now() time.Time { return f.t }

func newFake(synced bool) (*Clock, *fake) {
	f := &fake{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(func() bool { return synced })
	c.now = f.now
	return c, f
}

func TestUntrustedWithoutReferenceOrSync(t *testing.T) {
	c, _ := newFake(false)
	if _, _, err := c.Now(); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("err = %v, want ErrUntrusted", err)
	}
	if _, ok := c.Skew(); ok {
		t.Fatal("skew without a reference")
	}
}

func TestSynchronisedSystemClockIsTrusted(t *testing.T) {
	c, f := newFake(true)
	now, src, err := c.Now()
	if err != nil || src != SourceSystem || !now.Equal(f.t) {
		t.Fatalf("Now = %v %v %v", now, src, err)
	}
}

func TestReferenceWinsAndRunsOnTheLocalClock(t *testing.T) {
	c, f := newFake(true) // even a "synchronised" wall clock loses to a reference
	ref := f.t.Add(2 * time.Hour)
	c.Observe(ref, f.t)
	f.t = f.t.Add(90 * time.Second)
	now, src, err := c.Now()
	if err != nil || src != SourceReference || !now.Equal(ref.Add(90*time.Second)) {
		t.Fatalf("Now = %v %v %v, want %v", now, src, err, ref.Add(90*time.Second))
	}
	if skew, ok := c.Skew(); !ok || skew != 2*time.Hour {
		t.Fatalf("skew = %v %v", skew, ok)
	}
}

func TestJitterInsideToleranceKeepsTheSample(t *testing.T) {
	c, f := newFake(false)
	ref := f.t.Add(-time.Hour)
	if !c.Observe(ref, f.t) {
		t.Fatal("first sample not taken")
	}
	f.t = f.t.Add(10 * time.Second)
	if c.Observe(ref.Add(10*time.Second+700*time.Millisecond), f.t) {
		t.Fatal("a sample within the tolerance replaced the estimate")
	}
	if !c.Observe(ref.Add(10*time.Second+3*time.Second), f.t) {
		t.Fatal("a sample off by 3 s was ignored")
	}
	now, _, _ := c.Now()
	if want := ref.Add(13 * time.Second); !now.Equal(want) {
		t.Fatalf("Now = %v, want %v", now, want)
	}
}

// The real clock: a reference survives with the monotonic reading, so a
// later Now is the reference plus the elapsed monotonic time.
func TestRealMonotonicCarry(t *testing.T) {
	c := New(func() bool { return false })
	ref := time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)
	c.Observe(ref, time.Now())
	now, src, err := c.Now()
	if err != nil || src != SourceReference || now.Before(ref) || now.Sub(ref) > time.Minute {
		t.Fatalf("Now = %v %v %v", now, src, err)
	}
}
