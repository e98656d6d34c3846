package gsm_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
)

// collector is a Receiver that decodes what it gets and can refuse it, as
// the real one does while the broker is down.
type collector struct {
	mu      sync.Mutex
	refuse  bool
	texts   []string
	reports []int // MRs
	invalid int
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 100)} }

func (c *collector) Receive(_ context.Context, tpdu []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return errors.New("broker down")
	}
	switch tpdu[0] & 0x03 {
	case 0:
		d, err := pdu.DecodeDeliver(tpdu)
		if err != nil {
			c.invalid++ // the real receiver quarantines it and says it is safe
			return nil
		}
		c.texts = append(c.texts, d.From.Value+":"+d.Text)
	case 2:
		r, err := pdu.DecodeStatusReport(tpdu)
		if err != nil {
			return err
		}
		c.reports = append(c.reports, int(r.MR))
	}
	c.changed <- struct{}{}
	return nil
}

func (c *collector) setRefuse(v bool) {
	c.mu.Lock()
	c.refuse = v
	c.mu.Unlock()
}

func (c *collector) waitN(t *testing.T, texts, reports int) {
	t.Helper()
	ctx := ctxT(t)
	for {
		c.mu.Lock()
		ok := len(c.texts) >= texts && len(c.reports) >= reports
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			t.Fatalf("have %q and reports %v; want %d texts, %d reports", c.texts, c.reports, texts, reports)
		}
	}
}

func waitStoreEmpty(t *testing.T, sim *modemsim.Sim) {
	t.Helper()
	if err := sim.WaitStore(ctxT(t), "empty store", func(stored, held int) bool { return stored == 0 && held == 0 }); err != nil {
		t.Fatalf("%v: %d entries left", err, len(sim.Store()))
	}
}

func TestReceiveStoredAtStartAnnouncedAndDirect(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{StoreCapacity: 4})
	// Messages waiting before the gateway starts: one held by the network
	// because the store is full.
	for i := range 5 {
		if _, err := sim.Deliver(modemsim.Incoming{From: "+40711111111", Text: fmt.Sprintf("early %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	c := newCollector()
	cfg := fast("")
	cfg.Receiver = c
	m := newModem(t, link, cfg)
	run(t, m)
	waitReady(t, m)
	c.waitN(t, 5, 0)
	waitStoreEmpty(t, sim)

	// Announced by +CMTI while running.
	if _, err := sim.Deliver(modemsim.Incoming{From: "+40722222222", Text: "later"}); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 6, 0)
	waitStoreEmpty(t, sim)

	// Routed directly: +CMT with the PDU on the next line (gammu's sample).
	sim.InjectURC("+CMT: ,23\r\n07918497483252F0040B918496445078F700007121320144744004D4F29C0E")
	c.waitN(t, 7, 0)
	if got := c.texts[6]; got != "+48694405877:Test" {
		t.Errorf("direct message %q", got)
	}
	// A status report routed directly.
	sim.InjectURC("+CDS: 25\r\n07914875215652F006360B914892347527F3817003018104808170030181448000")
	c.waitN(t, 7, 1)
	if c.reports[0] != 54 {
		t.Errorf("report MR %d, want 54", c.reports[0])
	}
}

func TestReceiveKeepsWhatTheReceiverRefused(t *testing.T) {
	c := newCollector()
	c.setRefuse(true)
	cfg := fast("")
	cfg.Receiver = c
	sim, _ := startReady(t, modemsim.Config{}, cfg)
	if _, err := sim.Deliver(modemsim.Incoming{From: "+40711111111", Text: "keep me"}); err != nil {
		t.Fatal(err)
	}
	// Several reads (announcement and keep-alives) find it and leave it.
	n := len(sim.Commands())
	if err := sim.WaitCommand(ctxT(t), "AT+CMGL=4", count(sim.Commands()[:n], "AT+CMGL=4")+3); err != nil {
		t.Fatal(err)
	}
	if len(sim.Store()) != 1 || count(sim.Commands(), "AT+CMGD") != 0 {
		t.Fatalf("store %d entries, %d deletes: nothing may be deleted before the receiver takes it", len(sim.Store()), count(sim.Commands(), "AT+CMGD"))
	}
	c.setRefuse(false)
	c.waitN(t, 1, 0)
	waitStoreEmpty(t, sim)
}

func TestReceiveUnreadableDoesNotBlockTheStore(t *testing.T) {
	c := newCollector()
	cfg := fast("")
	cfg.Receiver = c
	sim, _ := startReady(t, modemsim.Config{StoreCapacity: 5}, cfg)
	// Garbage in the store: unreadable PDUs are dropped so the store never fills.
	sim.DeliverTPDU([]byte{0x04, 0x0B}, false)
	if _, err := sim.Deliver(modemsim.Incoming{From: "+40711111111", Text: "after garbage"}); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 1, 0)
	waitStoreEmpty(t, sim)
	if c.texts[0] != "+40711111111:after garbage" || c.invalid != 1 {
		t.Errorf("texts %q, %d invalid", c.texts, c.invalid)
	}
}

func TestSubmitRequestsStatusReports(t *testing.T) {
	cfg := fast("")
	cfg.DeliveryReports = true
	c := newCollector()
	cfg.Receiver = c
	sim, m := startReady(t, modemsim.Config{}, cfg)
	refs := submitAll(t, m, encode(t, "+40726369867", "report me"))
	checkReceived(t, sim, 1, "+40726369867", "report me", refs)
	if !sim.Received()[0].StatusReport {
		t.Error("TP-SRR not set")
	}
	c.waitN(t, 0, 1)
	if c.reports[0] != refs[0] {
		t.Errorf("report for MR %d, sent %d", c.reports[0], refs[0])
	}
	var _ gsm.Receiver = c
}

func TestStoredStatusReportsAreReadAndDeleted(t *testing.T) {
	cfg := fast("")
	cfg.DeliveryReports = true
	c := newCollector()
	cfg.Receiver = c
	sim, m := startReady(t, modemsim.Config{StoredReportsOnly: true}, cfg)
	if exact(sim.Commands(), "AT+CNMI=2,1,0,2,0") != 1 {
		t.Fatalf("no fallback to stored reports: %q", sim.Commands())
	}
	refs := submitAll(t, m, encode(t, "+40726369867", strings.Repeat("two parts ", 20)))
	c.waitN(t, 0, 2)
	got := slices.Sorted(slices.Values(c.reports)) // reports may come in any order
	if !slices.Equal(got, slices.Sorted(slices.Values(refs))) {
		t.Errorf("reports %v for parts %v", c.reports, refs)
	}
	waitStoreEmpty(t, sim)
}
