// Package server exposes a hotkernel.Manager over HTTP: kernel listing,
// message sending with the kernels' outputs in the reply, reloads from a
// repository or an uploaded artifact, rollbacks, statistics and Prometheus
// metrics. docs/http-api.md describes every endpoint.
//
// A daemon builds the pieces in this order, so that the Manager's
// Config.OnReload already feeds the metrics when the Manager is made:
//
//	reg := prometheus.NewRegistry()
//	met := server.NewMetrics(reg)
//	hcfg := hotkernel.DefaultConfig()
//	hcfg.OnReload = met.ObserveReload
//	mgr, _ := hotkernel.New(hcfg, rt.Backend())
//	srv, _ := server.New(server.Config{Manager: mgr, Repo: repo, Token: tok, Metrics: met})
//	srv.Register(ctx, "counter", src, hotkernel.RegisterOptions{})
//	if err := server.CheckBind(addr, tok); err != nil { ... }
//	http.Serve(ln, srv.Handler())
//
// Kernels must be registered through Server.Register (or with
// Server.Output as their OutputFunc) for the send endpoints to return their
// outputs, and reloads should go through Server.Reload and
// Server.Rollback (the HTTP endpoints do) for the outputs to be matched to
// requests exactly; see Server.Send for the guarantee.
package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/repository"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Default limits; see Config.
const (
	DefaultMaxBodyBytes   = 16 << 20
	DefaultMaxJSONBytes   = 1 << 20
	DefaultMaxLineBytes   = 1 << 20
	DefaultMaxOutputBytes = 64 << 20
)

// Config configures a Server. Manager is required; everything else is
// optional.
type Config struct {
	// Manager runs the kernels. Required. The Server never closes it.
	Manager *hotkernel.Manager
	// Repo, when not nil, lets reloads name a repository version
	// ({"version": N}); without it such requests fail with 400.
	Repo *repository.Repo
	// Token, when not empty, is the bearer token every endpoint except
	// /healthz requires. Use CheckBind before listening: a non-loopback
	// address needs one.
	Token string
	// MaxBodyBytes bounds artifact uploads and batch message bodies;
	// default DefaultMaxBodyBytes (16 MiB). Larger bodies get 413.
	MaxBodyBytes int64
	// MaxJSONBytes bounds the JSON bodies of reload and rollback requests;
	// default DefaultMaxJSONBytes (1 MiB).
	MaxJSONBytes int64
	// MaxLineBytes bounds one line of a stream request; default
	// DefaultMaxLineBytes (1 MiB). A stream's total length is bounded only
	// by the request's context.
	MaxLineBytes int
	// MaxOutputBytes bounds the output bytes one send request collects;
	// outputs beyond it are counted as dropped in the reply. Default
	// DefaultMaxOutputBytes (64 MiB).
	MaxOutputBytes int
	// Logger receives request failures. Nil discards them.
	Logger *slog.Logger
	// Metrics are the reload metrics the Manager's Config.OnReload feeds
	// (see NewMetrics). When nil, New makes them on Registry, and reload
	// metrics are recorded only for what is passed to
	// Server.ObserveReload.
	Metrics *Metrics
	// Registry serves /metrics when Metrics is nil; default a new
	// registry. When Metrics is set, Registry must be nil or Metrics'
	// own registry.
	Registry *prometheus.Registry
}

// Server serves a Manager over HTTP. Make it with New; its methods are safe
// for concurrent use.
type Server struct {
	mgr     *hotkernel.Manager
	repo    *repository.Repo
	token   [32]byte
	auth    bool
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	mux     *http.ServeMux

	mu    sync.Mutex
	sinks map[string]*sink

	stopping atomic.Bool
}

// New checks cfg, registers the scrape-time collector on the metrics'
// registry and returns a Server. It fails without a Manager, with
// negative limits, with a Metrics made on another registry than
// cfg.Registry, and when the collector is already registered (one Metrics
// serves one Server).
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("server: Config.Manager is nil")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxJSONBytes < 0 || cfg.MaxLineBytes < 0 || cfg.MaxOutputBytes < 0 {
		return nil, errors.New("server: negative limit in Config")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxJSONBytes == 0 {
		cfg.MaxJSONBytes = DefaultMaxJSONBytes
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	met := cfg.Metrics
	if met == nil {
		reg := cfg.Registry
		if reg == nil {
			reg = prometheus.NewRegistry()
		}
		met = NewMetrics(reg)
	} else if cfg.Registry != nil && cfg.Registry != met.reg {
		return nil, errors.New("server: Config.Metrics was made on another registry than Config.Registry")
	}
	s := &Server{
		mgr:     cfg.Manager,
		repo:    cfg.Repo,
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: met,
		sinks:   make(map[string]*sink),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Token != "" {
		s.auth = true
		s.token = sha256.Sum256([]byte(cfg.Token))
	}
	if err := met.reg.Register(&collector{s: s}); err != nil {
		return nil, fmt.Errorf("server: register collector: %w", err)
	}
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler serving every endpoint of
// docs/http-api.md, with authentication when Config.Token is set.
func (s *Server) Handler() http.Handler { return s.mux }

// Stopping makes /readyz answer 503 from now on. A daemon calls it when it
// begins to shut down, before closing the Manager. It cannot be undone.
func (s *Server) Stopping() { s.stopping.Store(true) }

// ObserveReload records one reload in the metrics; it is Metrics.ObserveReload
// of the Server's metrics. Do not call it for reloads that the Manager's
// Config.OnReload already reports, or they count twice.
func (s *Server) ObserveReload(res *hotkernel.Result, err error) { s.metrics.ObserveReload(res, err) }

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.handle(mux, "GET /readyz", s.handleReadyz)
	s.handle(mux, "GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP)
	s.handle(mux, "GET /v1/kernels", s.handleList)
	s.handle(mux, "GET /v1/kernels/{id}", s.handleGet)
	s.handle(mux, "POST /v1/kernels/{id}/messages", s.handleMessages)
	s.handle(mux, "POST /v1/kernels/{id}/stream", s.handleStream)
	s.handle(mux, "POST /v1/kernels/{id}/reload", s.handleReload)
	s.handle(mux, "POST /v1/kernels/{id}/rollback", s.handleRollback)
	s.handle(mux, "GET /v1/stats", s.handleStats)
	s.handle(mux, "/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	s.mux = mux
}

// handle registers h behind the bearer-token check.
func (s *Server) handle(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if s.auth && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hotkernel"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		h(w, r)
	})
}

// authorized compares the request's bearer token with the configured one
// in constant time (over their SHA-256, so the length does not leak
// either).
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(h[len(prefix):]))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// CheckBind returns an error when addr (a host:port as net.Listen takes
// it, or a bare host) listens beyond the loopback interface and token is
// empty. Loopback means "localhost", or IP addresses that are loopback
// (127.0.0.0/8, ::1); an empty host (":8080"), 0.0.0.0, :: and every other
// name or address count as non-loopback.
func CheckBind(addr string, token string) error {
	if token != "" {
		return nil
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("server: refusing to listen on %q without a token: only loopback addresses may be served unauthenticated", addr)
}
