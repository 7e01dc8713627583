package main

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/internal/webhook"
)

// The daemon with webhooks.listen set serves the endpoint on its own listener: one signed
// LeadConnector delivery is answered 200 and is one row of the warehouse's inbox.
func TestDaemonServesWebhooks(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(11), testenv.SQLite)
	env.Authorized(t)
	daemonConfig(t, env)
	pub, priv, err := webhook.GenerateSandboxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(env.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("webhooks:\n  listen: \"127.0.0.1:0\"\n  leadconnector:\n    ed25519_keys: [\"" +
		base64.StdEncoding.EncodeToString(pub) + "\"]\n")
	if cerr := f.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}

	cmd, logs, exited := daemonStart(t, env.ConfigPath)
	url := logs.field(t, "serving webhooks", "url")
	metrics := logs.field(t, "serving metrics and health", "url")
	if url == metrics+"/webhooks/" {
		t.Fatalf("webhooks on the metrics listener: %s", url)
	}

	body := []byte(`{"type":"ContactDelete","locationId":"loc-1","id":"c-1","timestamp":"` +
		time.Now().UTC().Format(time.RFC3339) + `","webhookId":"wh-daemon-1"}`)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"leadconnector", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(webhook.HeaderGHLSignature, webhook.SignGHL(priv, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed delivery: %d", resp.StatusCode)
	}
	var n int
	var op string
	if err := env.OpenDB(t).QueryRow(`SELECT count(*), max(op) FROM webhook_inbox`).Scan(&n, &op); err != nil || n != 1 || op != webhook.OpDelete {
		t.Errorf("inbox: %d rows, op %q, %v; want one delete", n, op, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(daemonWait):
		t.Fatal("daemon still running after SIGTERM")
	}
}
