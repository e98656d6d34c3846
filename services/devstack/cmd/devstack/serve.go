package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/oidc"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/logging"
)

// serve runs the stand-ins as a long-lived server: the API under /api, the
// OIDC provider under /realms/sr, the API's dev hooks under /_devstack/ and
// the simulator's under /_devstack/modem/; the simulator itself on TCP.
func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	httpAddr := fs.String("http", ":8090", "address for the API and OIDC stand-ins")
	modemTCP := fs.String("modem-tcp", ":7000", "address for the modem simulator")
	latency := fs.Duration("latency", 500*time.Millisecond, "simulated network time per SMS part")
	pin := fs.String("pin", "", "SIM PIN the simulator asks for")
	var offset time.Duration
	if v := os.Getenv("DEVSTACK_API_CLOCK_OFFSET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("DEVSTACK_API_CLOCK_OFFSET: %w", err)
		}
		offset = d
	}
	fs.DurationVar(&offset, "api-clock-offset", offset,
		"run the SMS API stand-in's clock this far ahead of the host (negative: behind), e.g. 2h or -2h; default $DEVSTACK_API_CLOCK_OFFSET")
	_ = fs.Parse(args)

	log, err := logging.New("info", "console")
	if err != nil {
		return err
	}
	op, err := oidc.New(oidc.Config{
		Realm: harness.Realm, Clients: map[string]string{harness.ClientID: harness.ClientSecret},
		Users: map[string]string{harness.User: harness.Password},
	})
	if err != nil {
		return err
	}
	api := smsapi.New(smsapi.Options{
		Verify:       func(tok string) error { _, err := op.Verify(tok); return err },
		DevEndpoints: true, Logger: log.Named("api"), ClockOffset: offset,
	})
	if offset != 0 {
		log.Warn("the SMS API stand-in's clock is offset from the host's", zap.Duration("offset", offset))
	}
	go api.Run(ctx) //nolint:errcheck // ends with ctx

	sim := modemsim.New(modemsim.Config{PIN: *pin, PartLatency: *latency, Logger: log.Named("modemsim")})
	defer sim.Close()
	addr, err := sim.ServeTCP(*modemTCP)
	if err != nil {
		return err
	}
	log.Info("modem simulator on TCP", zap.Stringer("addr", addr))

	mux := http.NewServeMux()
	mux.Handle("/realms/", op.Handler())
	mux.HandleFunc("/_devstack/modem/", func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/_devstack/modem/") {
		case "received":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(sim.Received())
		case "stats":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(sim.Stats())
		default:
			http.NotFound(w, r)
		}
	})
	mux.Handle("/", api)
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info("stand-ins serving", zap.String("http", ln.Addr().String()),
		zap.String("issuer", fmt.Sprintf("http://<host>%s/realms/%s", *httpAddr, harness.Realm)))
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
