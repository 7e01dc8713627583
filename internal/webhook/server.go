package webhook

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
)

// Reasons the endpoint answers without storing, besides the verifiers' (metric labels).
const (
	ReasonTooLarge   Reason = "too_large"   // a body over the limit: 413
	ReasonReadError  Reason = "read_error"  // the body could not be read (a slow or broken client): 400
	ReasonBacklog    Reason = "backlog"     // the inbox holds MaxBacklog unapplied events: 429
	ReasonStoreError Reason = "store_error" // the database failed or was too slow: 429
)

// Defaults of ServerConfig.
const (
	DefaultMaxBacklog = 10000
	// DefaultStoreTimeout bounds the database work of one delivery: past it the delivery is
	// answered 429, which HighLevel retries, rather than left waiting for the vendor's timeout.
	DefaultStoreTimeout = 2 * time.Second
	// RetryAfter is the Retry-After of a 429, in seconds. HighLevel keeps its own schedule
	// (about 10 minutes, API-CONTRACTS.md §6.1); the header is for the other senders.
	RetryAfter = 60
)

// Endpoint paths, one per vendor.
const (
	PathLeadConnector = "/webhooks/" + sources.LeadConnector
	PathLACRM         = "/webhooks/" + sources.LACRM
	PathLocaliQ       = "/webhooks/" + sources.LocaliQ
)

// ServerConfig configures NewHandler. The zero values mean the defaults.
type ServerConfig struct {
	// Inbox stores the events (required): the warehouse, *sink.SQLite or *sink.Postgres.
	Inbox sink.Inbox
	// LeadConnector configures the LeadConnector verifier; its Replays is the inbox.
	LeadConnector LeadConnectorConfig
	// LACRMSecrets lists the secrets of the registered LACRM hooks: a delivery is accepted
	// when it is signed with any of them. Nil: no LACRM hook is registered, and the LACRM
	// endpoint answers 404.
	LACRMSecrets func(ctx context.Context) ([]string, error)
	// LocaliQHooks lists the registered LocaliQ hooks, whose authorization values identify
	// the deliveries. Nil: the LocaliQ endpoint answers 404.
	LocaliQHooks func(ctx context.Context) ([]LocaliQHook, error)
	// MaxBodyBytes bounds a body (default and most MaxBodyBytes): beyond it, 413.
	MaxBodyBytes int64
	// MaxBacklog is how many unapplied events the inbox may hold before deliveries are
	// answered 429 (default DefaultMaxBacklog). Several workers each check it before their
	// own insert, so the inbox may exceed it by one delivery per worker.
	MaxBacklog int64
	// StoreTimeout is DefaultStoreTimeout when zero.
	StoreTimeout time.Duration
	Metrics      *ops.Metrics // nil: none
	Logger       *slog.Logger // nil: slog.Default()
}

// Handler serves the webhook endpoints. Each delivery is verified on its raw bytes, parsed,
// and stored in the inbox in one transaction before it is answered 200:
//
//	200  stored; or stored already (a replay: it is durable, and the sender must not retry)
//	400  not a readable delivery (malformed, unreadable body)
//	401  not verified (missing, bad or unconfigured signature, stale timestamp)
//	403  an LACRM handshake, which no registration awaits yet
//	404  a vendor with no hooks configured
//	413  a body over the limit
//	429  not stored now: the inbox is over its bound, or the database failed or was slow
//
// 5xx is never answered: HighLevel retries only 429 (API-CONTRACTS.md §6.1).
type Handler struct {
	cfg ServerConfig
	lc  *LeadConnectorVerifier
	log *slog.Logger
	mux *http.ServeMux
}

// inboxReplays is the inbox as the LeadConnector verifier's ReplayChecker.
type inboxReplays struct{ in sink.Inbox }

func (r inboxReplays) Seen(ctx context.Context, vendor, id string) (bool, error) {
	return r.in.InboxSeen(ctx, vendor, id)
}

// NewHandler builds the endpoints.
func NewHandler(cfg ServerConfig) (*Handler, error) {
	if cfg.Inbox == nil {
		return nil, errors.New("webhook: no inbox")
	}
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, MaxBodyBytes)
	if cfg.MaxBodyBytes < 0 || cfg.MaxBodyBytes > MaxBodyBytes {
		return nil, fmt.Errorf("webhook: body limit %d outside 1..%d", cfg.MaxBodyBytes, MaxBodyBytes)
	}
	cfg.MaxBacklog = cmp.Or(cfg.MaxBacklog, DefaultMaxBacklog)
	cfg.StoreTimeout = cmp.Or(cfg.StoreTimeout, DefaultStoreTimeout)
	h := &Handler{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()), mux: http.NewServeMux()}
	lcCfg := cfg.LeadConnector
	lcCfg.Replays = inboxReplays{cfg.Inbox}
	var err error
	if h.lc, err = NewLeadConnectorVerifier(lcCfg); err != nil {
		return nil, err
	}
	h.mux.HandleFunc("POST "+PathLeadConnector, h.serve(sources.LeadConnector, h.leadConnector))
	h.mux.HandleFunc("POST "+PathLACRM, h.serve(sources.LACRM, h.lacrm))
	h.mux.HandleFunc("POST "+PathLocaliQ, h.serve(sources.LocaliQ, h.localiq))
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// answer is what a vendor's step decided when it does not go on to store events.
type answer struct {
	status int
	reason Reason
	header http.Header
}

// verifyFunc verifies and parses one delivery; a non-nil answer ends it there.
type verifyFunc func(ctx context.Context, r *http.Request, body []byte) ([]Event, *answer, error)

var errNotConfigured = errors.New("not configured")

func (h *Handler) serve(vendor string, verify verifyFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.cfg.Metrics.WebhookReceived(vendor)
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				h.refuse(w, vendor, http.StatusRequestEntityTooLarge, ReasonTooLarge, nil)
				return
			}
			h.refuse(w, vendor, http.StatusBadRequest, ReasonReadError, nil)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.StoreTimeout)
		defer cancel()
		events, ans, err := verify(ctx, r, body)
		switch {
		case errors.Is(err, errNotConfigured):
			h.refuse(w, vendor, http.StatusNotFound, ReasonUnconfigured, nil)
			return
		case err != nil:
			h.rejected(w, vendor, err)
			return
		case ans != nil:
			h.refuse(w, vendor, ans.status, ans.reason, ans.header)
			return
		}

		if len(events) == 0 { // an LACRM delivery of no records
			reply(w, http.StatusOK, nil)
			return
		}
		pending, _, err := h.cfg.Inbox.InboxBacklog(ctx)
		if err != nil {
			h.storeFailed(w, vendor, err)
			return
		}
		h.cfg.Metrics.SetWebhookBacklog(pending)
		if pending >= h.cfg.MaxBacklog {
			h.refuse(w, vendor, http.StatusTooManyRequests, ReasonBacklog, nil)
			return
		}
		rows := make([]sink.InboxEvent, len(events))
		for i, ev := range events {
			rows[i] = sink.InboxEvent{Vendor: ev.Vendor, WebhookID: ev.WebhookID, EventType: ev.Type,
				Account: ev.Account, Kind: ev.Kind, Op: ev.Op, RecordID: ev.RecordID,
				VendorUpdatedAt: ev.VendorUpdatedAt, OccurredAt: ev.OccurredAt, Body: body}
		}
		n, err := h.cfg.Inbox.InboxInsertAll(ctx, rows)
		if err != nil {
			h.storeFailed(w, vendor, err)
			return
		}
		if n == 0 {
			// Another copy (a retry racing the first, another worker's) was stored first.
			h.refuse(w, vendor, http.StatusOK, ReasonReplay, nil)
			return
		}
		h.cfg.Metrics.SetWebhookBacklog(pending + int64(n))
		for _, ev := range events {
			h.cfg.Metrics.WebhookAccepted(vendor, ev.Op, 1)
		}
		reply(w, http.StatusOK, nil)
	}
}

// rejected answers a verifier's error: a rejection 4xx (a replay 200: it is stored), anything
// else (the replay check's database) 429.
func (h *Handler) rejected(w http.ResponseWriter, vendor string, err error) {
	reason, ok := ReasonOf(err)
	if !ok {
		h.storeFailed(w, vendor, err)
		return
	}
	status := http.StatusUnauthorized
	switch reason {
	case ReasonReplay:
		status = http.StatusOK
	case ReasonMalformed:
		status = http.StatusBadRequest
	}
	h.refuse(w, vendor, status, reason, nil)
}

func (h *Handler) storeFailed(w http.ResponseWriter, vendor string, err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the database took longer than %s", h.cfg.StoreTimeout)
	}
	h.log.Warn("webhook: not stored; answered 429", slog.String("vendor", vendor), slog.Any("error", err))
	h.refuse(w, vendor, http.StatusTooManyRequests, ReasonStoreError, nil)
}

// refuse answers a delivery that stores nothing. The log has the vendor and the reason only:
// never the body, nor any value of it.
func (h *Handler) refuse(w http.ResponseWriter, vendor string, status int, reason Reason, header http.Header) {
	h.cfg.Metrics.WebhookRejected(vendor, string(reason))
	switch {
	case status == http.StatusOK:
		h.log.Debug("webhook: stored already", slog.String("vendor", vendor))
	case reason != ReasonStoreError:
		h.log.Warn("webhook: refused", slog.String("vendor", vendor), slog.String("reason", string(reason)), slog.Int("status", status))
	}
	if status == http.StatusTooManyRequests {
		if header == nil {
			header = http.Header{}
		}
		header.Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	reply(w, status, header)
}

func reply(w http.ResponseWriter, status int, header http.Header) {
	for k, vs := range header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status)+"\n")
}

func (h *Handler) leadConnector(ctx context.Context, r *http.Request, body []byte) ([]Event, *answer, error) {
	ev, err := h.lc.Verify(ctx, r.Header, body)
	if err != nil {
		return nil, nil, err
	}
	return []Event{ev}, nil, nil
}

// lacrm checks a delivery against every registered hook's secret. A handshake is refused
// until `webhooks register` exists to await one: accepting a secret from whoever sends it
// would let anyone sign deliveries (LACRMHandshake).
func (h *Handler) lacrm(ctx context.Context, r *http.Request, body []byte) ([]Event, *answer, error) {
	if h.cfg.LACRMSecrets == nil {
		return nil, nil, errNotConfigured
	}
	if _, ok, err := LACRMHandshake(r.Header); ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, &answer{status: http.StatusForbidden, reason: ReasonUnconfigured}, nil
	}
	secrets, err := h.cfg.LACRMSecrets(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: lacrm: hook secrets: %w", err)
	}
	verr := error(reject(sources.LACRM, ReasonUnconfigured, "no hook secret"))
	for _, s := range secrets {
		if verr = VerifyLACRM(r.Header, body, s); verr == nil {
			break
		}
		if reason, _ := ReasonOf(verr); reason == ReasonMissingSignature {
			break // no other secret changes that
		}
	}
	if verr != nil {
		return nil, nil, verr
	}
	evs, err := ParseLACRM(body)
	return evs, nil, err
}

// localiq finds the hook by the authorization value the delivery carries.
func (h *Handler) localiq(ctx context.Context, r *http.Request, body []byte) ([]Event, *answer, error) {
	if h.cfg.LocaliQHooks == nil {
		return nil, nil, errNotConfigured
	}
	hooks, err := h.cfg.LocaliQHooks(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: localiq: hooks: %w", err)
	}
	hook, err := MatchLocaliQ(r.Header, hooks)
	if err != nil {
		return nil, nil, err
	}
	ev, err := ParseLocaliQ(hook.Advertiser, hook.EventType, body)
	if err != nil {
		return nil, nil, err
	}
	return []Event{ev}, nil, nil
}

// Server timeouts. ReadTimeout covers the body: a sender that trickles a body is cut off
// rather than holding a connection.
const readTimeout = 15 * time.Second

// Start listens on addr now (a port in use fails at startup) and serves h until Shutdown:
// HTTPS with the certificate and key files when certFile is set, else plain HTTP (for
// loopback behind a reverse proxy).
func Start(addr string, h http.Handler, certFile, keyFile string, logger *slog.Logger) (*ops.Server, error) {
	o := ops.ServerOptions{Name: "webhook server", ReadTimeout: readTimeout, MaxHeaderBytes: 64 << 10}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("webhook: TLS certificate: %w", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv, err := ops.StartServerWith(addr, h, cmp.Or(logger, slog.Default()), o)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return srv, nil
}
