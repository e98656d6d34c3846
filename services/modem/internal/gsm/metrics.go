package gsm

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
)

type metrics struct {
	atLatency    *prometheus.HistogramVec
	atErrors     *prometheus.CounterVec
	cmsErrors    *prometheus.CounterVec
	cmgs         prometheus.Histogram
	signal       prometheus.Gauge
	registration prometheus.Gauge
	reconnects   prometheus.Counter
	recoveries   *prometheus.CounterVec

	storeUsed, storeTotal prometheus.Gauge
	incomingInvalid       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		atLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sms_modem_at_command_seconds", Help: "AT command latency by command.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"command"}),
		atErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_at_errors_total", Help: "+CME/+CMS errors and timeouts by kind and code.",
		}, []string{"kind", "code"}),
		cmsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_cms_errors_total", Help: "+CMS ERROR answers to AT+CMGS by code.",
		}, []string{"code"}),
		cmgs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sms_modem_cmgs_seconds", Help: "Time for one part from AT+CMGS to +CMGS.",
			Buckets: []float64{.01, .1, .5, 1, 2, 4, 6, 10, 20, 40, 60, 120},
		}),
		signal:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_modem_signal_rssi", Help: "+CSQ rssi (0..31, 99 unknown)."}),
		registration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_modem_registration_stat", Help: "+CREG/+CEREG stat (1 home, 5 roaming, -1 unknown)."}),
		reconnects:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_modem_reconnects_total", Help: "Port reopenings."}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_recoveries_total", Help: "Recovery ladder steps taken.",
		}, []string{"step"}),
		storeUsed:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_modem_sim_storage_used", Help: "Messages in the SIM store read by the gateway (AT+CPMS)."}),
		storeTotal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_modem_sim_storage_total", Help: "Capacity of the SIM store read by the gateway (AT+CPMS)."}),
		incomingInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_modem_incoming_invalid_total", Help: "Incoming PDUs the modem delivered unreadable (dropped).",
		}),
	}
	m.registration.Set(-1)
	m.signal.Set(99)
	if reg != nil {
		reg.MustRegister(m.atLatency, m.atErrors, m.cmsErrors, m.cmgs, m.signal, m.registration, m.reconnects, m.recoveries,
			m.storeUsed, m.storeTotal, m.incomingInvalid)
	}
	return m
}

// observe is the AT engine's per-command hook. cmd is the command name
// only, never its arguments.
func (m *metrics) observe(cmd string, d time.Duration, err error) {
	m.atLatency.WithLabelValues(strings.ToUpper(cmd)).Observe(d.Seconds())
	var cms *at.CMSError
	var cme *at.CMEError
	switch {
	case err == nil:
	case errors.As(err, &cms):
		m.atErrors.WithLabelValues("cms", strconv.Itoa(cms.Code)).Inc()
	case errors.As(err, &cme):
		m.atErrors.WithLabelValues("cme", strconv.Itoa(cme.Code)).Inc()
	case errors.Is(err, at.ErrTimeout):
		m.atErrors.WithLabelValues("timeout", "").Inc()
	}
}
