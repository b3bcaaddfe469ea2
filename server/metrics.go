package server

import (
	"errors"
	"strconv"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the reload metrics. Make them with NewMetrics before the
// Manager, pass ObserveReload as the Manager's Config.OnReload, and give
// them to New in Config.Metrics; New then adds the collector of the
// per-kernel message metrics, read from the Manager at scrape time.
type Metrics struct {
	reg     *prometheus.Registry
	reloads *prometheus.CounterVec
	phases  *prometheus.HistogramVec
	pause   *prometheus.HistogramVec
}

// NewMetrics registers the reload metrics on reg (a new registry when nil)
// and returns them. It panics when they are already registered on reg, as
// prometheus.MustRegister does: make one Metrics per registry.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		reg: reg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotkernel_reloads_total",
			Help: "Executed reloads and rollbacks by outcome: completed, failed (the old code kept serving) or rolled_back (undone after the swap).",
		}, []string{"kernel", "result"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hotkernel_reload_phase_seconds",
			Help:    "Duration of each reload phase (validate, compile, drain, checkpoint, swap, restore, health, total) of the last attempt; total includes retries.",
			Buckets: prometheus.ExponentialBucketsRange(1e-6, 30, 16),
		}, []string{"kernel", "phase"}),
		pause: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hotkernel_reload_pause_seconds",
			Help:    "How long no message was processed during a reload (checkpoint, swap and restore).",
			Buckets: prometheus.ExponentialBucketsRange(1e-6, 0.1, 11),
		}, []string{"kernel"}),
	}
	reg.MustRegister(m.reloads, m.phases, m.pause)
	return m
}

// Registry returns the registry the metrics are registered on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveReload records one executed reload, with the arguments of
// hotkernel.Config.OnReload: the result is "completed" when err is nil,
// "rolled_back" when res.RolledBack, and "failed" otherwise. Phase and
// pause durations are recorded when res is not nil. It does not block and
// is safe for concurrent use.
func (m *Metrics) ObserveReload(res *hotkernel.Result, err error) {
	kernel := ""
	if res != nil {
		kernel = res.Kernel
	}
	var pe *hotkernel.PhaseError
	if kernel == "" && errors.As(err, &pe) {
		kernel = pe.Kernel
	}
	result := "completed"
	switch {
	case err == nil:
	case res != nil && res.RolledBack:
		result = "rolled_back"
	default:
		result = "failed"
	}
	m.reloads.WithLabelValues(kernel, result).Inc()
	if res == nil {
		return
	}
	for _, p := range []struct {
		name string
		d    time.Duration
	}{
		{"validate", res.Validate}, {"compile", res.Compile}, {"drain", res.Drain},
		{"checkpoint", res.Checkpoint}, {"swap", res.Swap}, {"restore", res.Restore},
		{"health", res.Health}, {"total", res.Total},
	} {
		m.phases.WithLabelValues(kernel, p.name).Observe(p.d.Seconds())
	}
	if err == nil || res.RolledBack {
		m.pause.WithLabelValues(kernel).Observe(res.Pause.Seconds())
	}
}

// collector reads the per-kernel metrics from the Manager at scrape time.
type collector struct{ s *Server }

var (
	descProcessed = prometheus.NewDesc("hotkernel_messages_processed_total",
		"Messages handled, per kernel and code version.", []string{"kernel", "version"}, nil)
	descFailed = prometheus.NewDesc("hotkernel_messages_failed_total",
		"Messages that failed (dead letters), per kernel.", []string{"kernel"}, nil)
	descQueue = prometheus.NewDesc("hotkernel_queue_depth",
		"Messages waiting in the kernel's input queue.", []string{"kernel"}, nil)
	descDiscarded = prometheus.NewDesc("hotkernel_outputs_discarded_total",
		"Outputs of kernels registered through the server that arrived while no send request was collecting.", []string{"kernel"}, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descProcessed
	ch <- descFailed
	ch <- descQueue
	ch <- descDiscarded
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.s.mgr.List() {
		k, err := c.s.mgr.Kernel(id)
		if err != nil {
			continue
		}
		for v, n := range k.Processed() {
			ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(n), id, strconv.FormatUint(v, 10))
		}
		_, failed := k.DeadLetters()
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(failed), id)
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(k.QueueLen()), id)
		if sk := c.s.sinkFor(id, false); sk != nil {
			ch <- prometheus.MustNewConstMetric(descDiscarded, prometheus.CounterValue, float64(sk.ignored.Load()), id)
		}
	}
}
