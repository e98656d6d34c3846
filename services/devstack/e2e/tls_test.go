//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
	"github.com/sensorsreport/smsgw/shared/tlstest"
)

// A poller whose broker listener requires TLS: its own modem and a second
// one joining over tls:// with NATS_CA send the SMS, `sms-poller check`
// shows the certificate, and a modem trusting another CA stays not ready
// and says why.
func TestModemsJoinOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw e2e CA")
	cert, key := ca.Server("poller-pi", 365*24*time.Hour)
	st := start(t, harness.Options{BrokerTLS: &harness.BrokerTLS{CertFile: cert, KeyFile: key, CAFile: ca.File}})
	if !strings.HasPrefix(st.NATSURL, "tls://") {
		t.Fatalf("NATSURL = %s", st.NATSURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m2, err := st.AddModem(ctx, "pi2", modemsim.Config{})
	if err != nil {
		t.Fatalf("second modem over TLS: %v", err)
	}

	var ids []string
	for i := range 6 {
		ids = append(ids, st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: fmt.Sprintf("over tls %d", i), Tenant: "tenant-a", CountryCode: ptr("RO")}))
	}
	waitFinal(t, st, ids, time.Minute)
	for _, id := range ids {
		if m, _ := st.API.Get(id); m.Status != schema.StatusSent {
			t.Errorf("%s is %v, want Sent", id, m.Status)
		}
	}
	if n := len(st.Sim.Received()) + len(m2.Sim.Received()); n != len(ids) {
		t.Errorf("the phones got %d SMS, want %d", n, len(ids))
	}

	r := execute(t, st.Poller.Command(ctxT(t, time.Minute), "check"))
	if !strings.Contains(r.stdout, "OK    broker listener TLS required on 127.0.0.1:") || !strings.Contains(r.stdout, "cert CN=poller-pi") {
		t.Errorf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A modem that trusts another CA: not ready, and /readyz says why.
	other := tlstest.NewCA(t, "another CA")
	short, cancelShort := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShort()
	bad, err := st.AddModem(short, "wrong-ca", modemsim.Config{}, "NATS_CA="+other.File)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a modem trusting another CA: %v, want never ready", err)
	}
	resp, err := http.Get("http://" + bad.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "certificate") || !strings.Contains(string(body), "NATS_CA") {
		t.Errorf("/readyz of the modem with the wrong CA: %d %s", resp.StatusCode, body)
	}
}
