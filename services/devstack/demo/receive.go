package demo

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const hookSecret = "demo-webhook-secret"

// hook is the customer's webhook endpoint in the demo: it checks the
// signature exactly as the README shows and keeps the events.
type hook struct {
	url     string
	srv     *http.Server
	mu      sync.Mutex
	events  []map[string]any
	badSig  int
	changed chan struct{}
}

func startHook() (*hook, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hook{url: "http://" + ln.Addr().String() + "/sms-events", changed: make(chan struct{}, 1)}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(ln) //nolint:errcheck // ends with close
	return h, nil
}

func (h *hook) close() { _ = h.srv.Close() }

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	ok := hmac.Equal([]byte(r.Header.Get("X-Smsgw-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
	var ev map[string]any
	h.mu.Lock()
	if !ok || json.Unmarshal(body, &ev) != nil {
		h.badSig++
	} else {
		h.events = append(h.events, ev)
	}
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// receiveDemo shows the receive path: the delivery report of every Sent
// SMS, then a reply from a phone, each as the webhook received it.
func receiveDemo(ctx context.Context, st *harness.Stack, h *hook, ids []string, w io.Writer) error {
	sent := 0
	for _, id := range ids {
		if m, ok := st.API.Get(id); ok && m.Status == schema.StatusSent {
			sent++
		}
	}
	fmt.Fprintf(w, "\nReceive path: delivery reports and a reply, as the webhook %s receives them (signature checked)\n", h.url)
	if _, err := st.Sim.Deliver(modemsim.Incoming{From: "+40722000111", Text: "ACK 👍 on my way"}); err != nil {
		return err
	}
	shown := 0
	for {
		h.mu.Lock()
		evs, bad := h.events, h.badSig
		h.mu.Unlock()
		if bad > 0 {
			return fmt.Errorf("the webhook got %d requests with a bad signature", bad)
		}
		for _, e := range evs[shown:] {
			switch e["event"] {
			case schema.EventDelivery:
				fmt.Fprintf(w, "  sms.delivery  sms %v to %s: %v (%v/%v parts)\n", e["sms_id"], logging.MaskPhone(fmt.Sprint(e["to"])), e["status"], e["delivered_parts"], e["parts"])
			case schema.EventReceived:
				fmt.Fprintf(w, "  sms.received  from %s: %q (%v part, complete %v)\n", logging.MaskPhone(fmt.Sprint(e["from"])), e["text"], e["parts"], e["complete"])
			}
		}
		shown = len(evs)
		if shown >= sent+1 {
			// The modem deletes a message from the SIM right after the
			// broker stored it, which can be just after the webhook saw it.
			deadline := time.Now().Add(10 * time.Second)
			for len(st.Sim.Store()) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			left := "the SIM store is empty again"
			if n := len(st.Sim.Store()); n > 0 {
				left = fmt.Sprintf("%d message(s) still on the SIM", n)
			}
			fmt.Fprintf(w, "\nEvery Sent SMS got one delivery report and the reply arrived; %s.\n", left)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("receive path: %d of %d events arrived", shown, sent+1)
		case <-h.changed:
		case <-time.After(time.Second):
		}
	}
}
