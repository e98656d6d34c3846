package dispatch

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	claims       *prometheus.CounterVec
	jobs         prometheus.Counter
	reports      *prometheus.CounterVec
	queued       prometheus.Gauge
	latency      prometheus.Histogram
	refused      *prometheus.CounterVec
	claimRefused *prometheus.CounterVec
	dead         prometheus.Counter
	released     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_claims_total", Help: "Claim attempts by country and outcome (claimed, empty, error).",
		}, []string{"country", "outcome"}),
		jobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_poller_jobs_published_total", Help: "Jobs queued for the modem.",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_reports_total", Help: "Status updates by status and outcome (ok, retry, dead).",
		}, []string{"status", "outcome"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sms_poller_jobs_queued", Help: "Jobs waiting in the stream for the modem.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sms_poller_claim_to_report_seconds",
			Help:    "Time from claim to a confirmed status update.",
			Buckets: []float64{.005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_results_refused_total",
			Help: "Results not reported because no modem may send them: undecodable, a status a modem may not report, no job of this poller (not_issued), or Unknown for an SMS already reported (already_reported).",
		}, []string{"reason"}),
		claimRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_claims_refused_total",
			Help: "Claimed SMS not sent because the API's answer was unusable (invalid, no_tenant, too_long).",
		}, []string{"reason"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_held_jobs_released_total",
			Help: "Jobs held by a modem whose heartbeat stopped, handed back to the others (nak), not (error), or refused because the heartbeat named no job's ack subject.",
		}, []string{"outcome"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_poller_dead_letters_total", Help: "Results given up into the dead-letter stream SMS_DEAD.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.claims, m.jobs, m.reports, m.queued, m.latency, m.refused, m.claimRefused, m.dead, m.released)
	}
	return m
}

var modemUpDesc = prometheus.NewDesc("sms_poller_modem_up",
	"Every modem heard from in the last hour: 1 while its fresh heartbeat says ready. countries is its MODEM_COUNTRIES (empty: any); state is ready, not_ready, limited (MODEM_RATE_LIMIT reached), silent or conflict (two modems with one MODEM_ID).",
	[]string{"modem", "countries", "state"}, nil)

// modemStates are the values of sms_poller_modem_up's state label.
const (
	stateReady    = "ready"
	stateNotReady = "not_ready"
	stateLimited  = "limited" // MODEM_RATE_LIMIT reached
	stateSilent   = "silent"
	stateConflict = "conflict"
)

var modemHeadroomDesc = prometheus.NewDesc("sms_poller_modem_rate_headroom",
	"SMS parts a modem may still send in each MODEM_RATE_LIMIT window (e.g. window=\"6/m\"), as of its last heartbeat.",
	[]string{"modem", "window"}, nil)

// modemCollector exports one series per modem, so a modem that leaves
// disappears from the metrics an hour later instead of staying at 0.
type modemCollector struct{ d *Dispatcher }

func (c modemCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- modemUpDesc
	ch <- modemHeadroomDesc
}

func (c modemCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.d.Modems() {
		ch <- prometheus.MustNewConstMetric(modemUpDesc, prometheus.GaugeValue, boolGauge(m.Ready),
			m.ID, strings.Join(m.Countries, ","), m.State)
		for _, w := range m.RateLimit {
			ch <- prometheus.MustNewConstMetric(modemHeadroomDesc, prometheus.GaugeValue, float64(max(w.Max-w.Used, 0)), m.ID, w.Window)
		}
	}
}
