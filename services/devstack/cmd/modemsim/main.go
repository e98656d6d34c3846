// Command modemsim runs the simulated modem on a pty or a TCP port for
// manual checks with the real gateway binary. It prints the slave path (or
// the TCP address) and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/shared/logging"
)

func main() {
	link := flag.String("pty", "", "symlink to point at the pty slave, e.g. /tmp/ttyUSB-sim")
	addr := flag.String("tcp", "", "serve TCP on this address instead, e.g. 127.0.0.1:7777")
	pin := flag.String("pin", "", "SIM PIN; empty means none")
	latency := flag.Duration("latency", 2*time.Second, "network time per SMS part")
	regDelay := flag.Duration("reg-delay", 3*time.Second, "network search time after the SIM is ready")
	noise := flag.Bool("noise", false, "write vendor URCs between responses and after prompts")
	flag.Parse()
	if err := run(*link, *addr, modemsim.Config{PIN: *pin, PartLatency: *latency, RegistrationDelay: *regDelay}, *noise); err != nil {
		fmt.Fprintln(os.Stderr, "modemsim:", err)
		os.Exit(1)
	}
}

func run(link, addr string, cfg modemsim.Config, noise bool) error {
	if (link == "") == (addr == "") {
		return errors.New("give exactly one of -pty or -tcp")
	}
	log, err := logging.New("info", "console")
	if err != nil {
		return err
	}
	defer logging.Sync(log)
	cfg.Logger = log
	cfg.Seed = uint64(time.Now().UnixNano())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sim := modemsim.New(cfg)
	defer sim.Close()
	sim.SetURCNoise(noise)
	if link != "" {
		slave, err := sim.ServePTY(link)
		if err != nil {
			return err
		}
		fmt.Println(slave)
	} else {
		a, err := sim.ServeTCP(addr)
		if err != nil {
			return err
		}
		fmt.Println(a)
	}
	<-ctx.Done()
	return nil
}
