package config

import (
	"fmt"
	"net"
	"strconv"

	"github.com/leadsync/leadsync/internal/webhook"
)

// DefaultWebhookMaxBacklog is how many received and not yet applied webhook events the
// endpoint holds before it answers 429 (which HighLevel retries).
const DefaultWebhookMaxBacklog = 10000

// maxWebhookBacklog bounds webhooks.max_backlog: the inbox is a queue, not a warehouse.
const maxWebhookBacklog = 10_000_000

// Webhooks is the webhook endpoint (issue #19): its own listener, apart from the metrics one.
type Webhooks struct {
	// Listen is host:port; empty (the default) or "off" serves no webhooks. Prefer loopback
	// behind a reverse proxy that terminates TLS.
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile (both or neither) make the listener serve HTTPS itself.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// MaxBodyBytes bounds a request body (default and most webhook.MaxBodyBytes).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxBacklog is the inbox's bound (default DefaultWebhookMaxBacklog).
	MaxBacklog    int                   `yaml:"max_backlog"`
	LeadConnector LeadConnectorWebhooks `yaml:"leadconnector"`
}

// LeadConnectorWebhooks are the keys LeadConnector deliveries are verified with.
type LeadConnectorWebhooks struct {
	// Ed25519Keys verify X-GHL-Signature: PEM, or base64 of the key (any one may match).
	Ed25519Keys []string `yaml:"ed25519_keys"`
	// RSAKeys verify X-WH-Signature (PEM); none means the key HighLevel publishes.
	RSAKeys []string `yaml:"rsa_keys"`
	// DisableRSA refuses X-WH-Signature deliveries.
	DisableRSA bool `yaml:"disable_rsa"`
}

// Enabled reports whether the webhook endpoint should run.
func (w Webhooks) Enabled() bool { return w.Listen != "" && w.Listen != Off }

// TLS reports whether the listener serves HTTPS itself.
func (w Webhooks) TLS() bool { return w.TLSCertFile != "" }

func (w Webhooks) withDefaults() Webhooks {
	if w.MaxBodyBytes == 0 {
		w.MaxBodyBytes = webhook.MaxBodyBytes
	}
	if w.MaxBacklog == 0 {
		w.MaxBacklog = DefaultWebhookMaxBacklog
	}
	return w
}

// metricsListen is the metrics listener's address as the defaults will make it.
func (v *validator) metricsListen() string {
	if _, set := v.c.lines["http.listen"]; v.c.HTTP.Listen == "" && !set {
		return DefaultListen
	}
	return v.c.HTTP.Listen
}

func (v *validator) webhooks() {
	w := v.c.Webhooks
	if w.Enabled() {
		if _, port, err := net.SplitHostPort(w.Listen); err != nil {
			v.fail("webhooks.listen", "want host:port (e.g. 127.0.0.1:8971) or \"off\", got %q", w.Listen)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			v.fail("webhooks.listen", "bad port %q", port)
		} else if p != 0 && w.Listen == v.metricsListen() { // port 0: each gets a free port
			v.fail("webhooks.listen", "%s is the metrics listener (http.listen): give webhooks an address of their own", w.Listen)
		}
	}
	switch {
	case w.TLSCertFile != "" && w.TLSKeyFile == "":
		v.fail("webhooks.tls_key_file", "required with tls_cert_file")
	case w.TLSKeyFile != "" && w.TLSCertFile == "":
		v.fail("webhooks.tls_cert_file", "required with tls_key_file")
	}
	if n := w.MaxBodyBytes; n != 0 && (n < 1024 || n > webhook.MaxBodyBytes) {
		v.fail("webhooks.max_body_bytes", "must be between 1024 and %d, got %d", webhook.MaxBodyBytes, n)
	}
	if n := w.MaxBacklog; n < 0 || n > maxWebhookBacklog {
		v.fail("webhooks.max_backlog", "must be between 1 and %d, got %d", maxWebhookBacklog, n)
	}
	lc := w.LeadConnector
	for i, k := range lc.Ed25519Keys {
		if _, err := webhook.ParseEd25519PublicKey(k); err != nil {
			v.fail(fmt.Sprintf("webhooks.leadconnector.ed25519_keys[%d]", i), "not an Ed25519 public key: %v", err)
		}
	}
	for i, k := range lc.RSAKeys {
		if _, err := webhook.ParseRSAPublicKey(k); err != nil {
			v.fail(fmt.Sprintf("webhooks.leadconnector.rsa_keys[%d]", i), "not an RSA public key: %v", err)
		}
	}
	if lc.DisableRSA && len(lc.RSAKeys) > 0 {
		v.fail("webhooks.leadconnector.rsa_keys", "set, but disable_rsa refuses X-WH-Signature: keep one of them")
	}
	if lc.DisableRSA && len(lc.Ed25519Keys) == 0 && w.Enabled() {
		v.fail("webhooks.leadconnector.disable_rsa", "with no ed25519_keys, no LeadConnector delivery could be verified")
	}
}
