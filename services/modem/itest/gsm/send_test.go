package gsm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
)

func TestSubmitSingleAndConcatenated(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))

	refs := submitAll(t, m, encode(t, "0722000111", "Hello from the gateway €"))
	checkReceived(t, sim, 1, "+40722000111", "Hello from the gateway €", refs)

	long := strings.Repeat("Sensor 12 alarm: temperature above threshold. ", 6) // > 160 septets
	parts := encode(t, "+40722000111", long)
	if len(parts) < 2 {
		t.Fatalf("test text needs %d part(s); want a concatenated one", len(parts))
	}
	checkReceived(t, sim, 2, "+40722000111", long, submitAll(t, m, parts))

	uni := strings.Repeat("Temperatură ridicată în seră 🌡️. ", 4) // UCS2, surrogate pairs
	parts = encode(t, "+40722000111", uni)
	checkReceived(t, sim, 3, "+40722000111", uni, submitAll(t, m, parts))
	if got := sim.Received()[2].Encoding; got != modemsim.UCS2 {
		t.Errorf("encoding %s, want UCS2", got)
	}
}

func TestSubmitCMSErrorsAreClassified(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "classified")[0]
	for _, tc := range []struct {
		code int
		want gsm.Class
	}{
		{42, gsm.Transient}, // congestion
		{38, gsm.Transient}, // network out of order
		{21, gsm.Permanent}, // short message transfer rejected
		{304, gsm.Permanent},
		{332, gsm.Unknown}, // network timeout: may have left
	} {
		sim.InjectCMSErrors(tc.code, 1)
		_, err := m.Submit(ctxT(t), part.TPDULen, part.Hex)
		var cms *at.CMSError
		if !errors.As(err, &cms) || cms.Code != tc.code {
			t.Fatalf("code %d: Submit = %v, want that +CMS ERROR", tc.code, err)
		}
		if got := m.Classify(err); got != tc.want {
			t.Errorf("code %d classified %s, want %s", tc.code, got, tc.want)
		}
		// An error answer leaves the modem usable.
		if err := m.Ready(); err != nil {
			t.Fatalf("code %d: modem not ready after an error answer: %v", tc.code, err)
		}
	}
	refs := submitAll(t, m, []pdu.Part{part})
	checkReceived(t, sim, 1, "+40722000111", "classified", refs)
}

func TestSubmitWithEndedContextIsTransient(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "never written")[0]
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := m.Submit(ctx, part.TPDULen, part.Hex)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v, want the context's error", err)
	}
	if got := m.Classify(err); got != gsm.Transient {
		t.Fatalf("Classify(%v) = %s: nothing was written, so a retry is safe", err, got)
	}
	if n := count(sim.Commands(), "AT+CMGS"); n != 0 {
		t.Fatalf("AT+CMGS sent %d times", n)
	}
}

func TestURCNoiseDuringSends(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{Seed: 42}, fast(""))
	sim.SetURCNoise(true)
	sim.SetLineNoise(true)
	long := strings.Repeat("noise-proof ", 20)
	for i := 1; i <= 4; i++ {
		refs := submitAll(t, m, encode(t, "+40722000111", long))
		checkReceived(t, sim, i, "+40722000111", long, refs)
	}
	if sim.Stats().NoiseURCs == 0 {
		t.Fatal("no noise was injected; the test proves nothing")
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("noise knocked the modem out of ready: %v", err)
	}
	if n := sim.Stats().DupParts; n != 0 {
		t.Errorf("%d parts were sent twice", n)
	}
}

func TestResultTimeoutIsUnknownAndNotResent(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "did it leave?")[0]
	sim.HangCMGS(modemsim.HangAfterPDU)
	_, err := m.Submit(ctxT(t), part.TPDULen, part.Hex)
	if err == nil {
		t.Fatal("Submit succeeded without a +CMGS answer")
	}
	if got := gsm.Classify(err); got != gsm.Unknown {
		t.Fatalf("Classify(%v) = %s, want unknown", err, got)
	}
	if !errors.Is(err, at.ErrSubmitUnknown) {
		t.Errorf("error %v does not match at.ErrSubmitUnknown", err)
	}
	// The failed send starts recovery; the modem comes back once it answers.
	waitState(t, m, gsm.StateRecovering)
	sim.Unhang()
	waitReady(t, m)
	if n := len(sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted, want 1: an unknown outcome must never be resent", n)
	}
	if n := count(sim.Commands(), "AT+CMGS="); n != 1 {
		t.Fatalf("AT+CMGS sent %d times, want 1", n)
	}
	if got := sim.Received(); len(got) != 1 || got[0].Text != "did it leave?" {
		t.Fatalf("received %+v; the simulated network did take the part", got)
	}
}

func TestPromptTimeoutIsTransient(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "no prompt")[0]
	sim.HangCMGS(modemsim.HangBeforePrompt)
	// The caller's deadline (the sender's send timeout) ends the wait for
	// the prompt; the engine's own prompt timeout is longer.
	ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	_, err := m.Submit(ctx, part.TPDULen, part.Hex)
	if got := gsm.Classify(err); err == nil || got != gsm.Transient {
		t.Fatalf("Submit = %v classified %s, want a transient error", err, got)
	}
	if errors.Is(err, at.ErrSubmitUnknown) {
		t.Fatalf("Submit = %v: no prompt means nothing was submitted", err)
	}
	sim.Unhang()
	waitReady(t, m)
	if n := len(sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs reached the modem without a prompt", n)
	}
	refs := submitAll(t, m, []pdu.Part{part})
	checkReceived(t, sim, 1, "+40722000111", "no prompt", refs)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want gsm.Class
	}{
		{&at.CMSError{Code: 42}, gsm.Transient},
		{&at.CMSError{Code: 331}, gsm.Transient},
		{&at.CMSError{Code: 500}, gsm.Transient},
		{&at.CMSError{Code: 21}, gsm.Permanent},
		{&at.CMSError{Code: 330}, gsm.Permanent},
		{&at.CMSError{Code: 200}, gsm.Permanent},
		{&at.CMSError{Code: 332}, gsm.Unknown},
		{at.ErrPromptTimeout, gsm.Transient},
		{at.ErrResultTimeout, gsm.Unknown},
		{gsm.ErrSubmitInterrupted, gsm.Unknown},
		{gsm.ErrNotReady, gsm.Transient},
		{&at.CMEError{Code: 100}, gsm.Transient},
		{context.DeadlineExceeded, gsm.Transient},
	} {
		if got := gsm.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
