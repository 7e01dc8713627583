package ops

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = 5 * time.Second

// NewHandler serves:
//
//	/metrics  the Prometheus metrics of m
//	/healthz  200 while the process serves HTTP (liveness)
//	/readyz   200 when ready(ctx) returns nil, else 503 with the reason (readiness)
//	/         the status page (WithStatusPage), else a list of the above
//
// ready may be nil (always ready). Its error text is shown to whoever can reach the
// endpoint: it must name the problem, not carry secrets.
func NewHandler(m *Metrics, ready func(ctx context.Context) error, opts ...HandlerOption) http.Handler {
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
			defer cancel()
			if err := ready(ctx); err != nil {
				text(w, http.StatusServiceUnavailable, "not ready: "+oneLine(err.Error()))
				return
			}
		}
		text(w, http.StatusOK, "ok")
	})
	if o.status != nil {
		mux.Handle("GET /{$}", NewStatusPage(o.status))
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			text(w, http.StatusOK, "leadsync: /metrics /healthz /readyz")
		})
	}
	return mux
}

// HandlerOption adds to what NewHandler serves.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	status StatusProvider
}

// WithStatusPage serves the status page of provider at / (see NewStatusPage).
func WithStatusPage(provider StatusProvider) HandlerOption {
	return func(o *handlerOptions) { o.status = provider }
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Server is a running HTTP listener: the metrics and health endpoint, or the webhooks'.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	tls  bool
	name string // in Shutdown's error
	done chan error
}

// ServerOptions tune StartServerWith; the zero value is the metrics endpoint's.
type ServerOptions struct {
	// Name says which server an error is about ("metrics server" when empty).
	Name string
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// ReadTimeout bounds reading a whole request, its body included (10 s when zero).
	ReadTimeout time.Duration
	// MaxHeaderBytes bounds the request headers (net/http's 1 MiB when zero).
	MaxHeaderBytes int
}

// StartServer listens on addr now (so a port in use fails at startup, not later) and serves
// h in the background until Shutdown. logger (may be nil) gets the server's own errors.
func StartServer(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	return StartServerWith(addr, h, logger, ServerOptions{})
}

// StartServerWith is StartServer with options.
func StartServerWith(addr string, h http.Handler, logger *slog.Logger, o ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops: listen on %s: %w", addr, err)
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       cmp.Or(o.ReadTimeout, 10*time.Second),
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    o.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		tls:  o.TLS != nil,
		name: cmp.Or(o.Name, "metrics server"),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the server, e.g. "http://127.0.0.1:9464".
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Shutdown stops accepting connections and waits for in-flight requests until ctx ends,
// then closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serveErr := <-s.done; err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("ops: shut down %s: %w", s.name, err)
	}
	return nil
}
