package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/webhook"
)

func TestWebhooksSection(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(lcConn), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Webhooks; w.Enabled() || w.MaxBodyBytes != webhook.MaxBodyBytes || w.MaxBacklog != config.DefaultWebhookMaxBacklog {
		t.Errorf("default webhooks = %+v; want off, the package's body limit, backlog %d", w, config.DefaultWebhookMaxBacklog)
	}
	pub, _, err := webhook.GenerateSandboxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := webhook.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	yaml := "webhooks:\n  listen: 127.0.0.1:8971\n  tls_cert_file: /etc/leadsync/wh.crt\n  tls_key_file: /etc/leadsync/wh.key\n" +
		"  max_body_bytes: 65536\n  max_backlog: 50\n  leadconnector:\n    disable_rsa: true\n    ed25519_keys:\n      - |\n" +
		"        " + strings.ReplaceAll(strings.TrimSpace(pem), "\n", "\n        ") + "\n" + lcConn
	c, err = config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	w := c.Webhooks
	if !w.Enabled() || !w.TLS() || w.MaxBodyBytes != 65536 || w.MaxBacklog != 50 || !w.LeadConnector.DisableRSA || len(w.LeadConnector.Ed25519Keys) != 1 {
		t.Errorf("webhooks = %+v", w)
	}
	if c, err := config.Parse([]byte("webhooks:\n  listen: \"off\"\n"), "test.yaml"); err != nil || c.Webhooks.Enabled() {
		t.Errorf("listen: off = %+v, %v", c, err)
	}
}

func TestWebhooksErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, field, msg string }{
		{"bad listen", "webhooks:\n  listen: 8971\n", "webhooks.listen", "want host:port"},
		{"the metrics listener", "webhooks:\n  listen: 127.0.0.1:9464\n", "webhooks.listen", "is the metrics listener"},
		{"the configured metrics listener", "http:\n  listen: 127.0.0.1:9000\nwebhooks:\n  listen: 127.0.0.1:9000\n", "webhooks.listen", "is the metrics listener"},
		{"cert without key", "webhooks:\n  listen: 127.0.0.1:8971\n  tls_cert_file: /x.crt\n", "webhooks.tls_key_file", "required with tls_cert_file"},
		{"key without cert", "webhooks:\n  tls_key_file: /x.key\n", "webhooks.tls_cert_file", "required with tls_key_file"},
		{"body limit too big", "webhooks:\n  max_body_bytes: 99999999\n", "webhooks.max_body_bytes", "must be between 1024"},
		{"negative backlog", "webhooks:\n  max_backlog: -1\n", "webhooks.max_backlog", "must be between 1"},
		{"bad ed25519 key", "webhooks:\n  leadconnector:\n    ed25519_keys: [nope]\n", "webhooks.leadconnector.ed25519_keys[0]", "not an Ed25519 public key"},
		{"bad rsa key", "webhooks:\n  leadconnector:\n    rsa_keys: [nope]\n", "webhooks.leadconnector.rsa_keys[0]", "not an RSA public key"},
		{"no key at all", "webhooks:\n  listen: 127.0.0.1:8971\n  leadconnector:\n    disable_rsa: true\n", "webhooks.leadconnector.disable_rsa", "no LeadConnector delivery could be verified"},
		{"unknown key", "webhooks:\n  listen: 127.0.0.1:8971\n  max_bytes: 5\n", "webhooks.max_bytes", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), "test.yaml")
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(ce.Msg, tt.msg) || ce.Line == 0 {
				t.Errorf("got %v; want field %s with %q and a line", err, tt.field, tt.msg)
			}
		})
	}
}
