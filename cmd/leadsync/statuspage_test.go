package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/testenv"
)

var emailLike = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z.]{2,}`)

// The daemon's page at / shows what `leadsync status` shows, from the warehouse it syncs:
// each connection with its last run, and a bar per day of the last 30.
func TestStatusPageOfTheDaemon(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(43), testenv.SQLite)
	env.Authorized(t)
	daemonConfig(t, env)

	_, logs, _ := daemonStart(t, env.ConfigPath)
	url := logs.field(t, "serving metrics and health", "url")

	names := []string{sandbox.ConnectionName("leadconnector"), sandbox.ConnectionName("localiq"), sandbox.ConnectionName("lacrm")}
	var body string
	deadline := time.Now().Add(daemonWait)
	for {
		var code int
		code, body = daemonGet(t, url+"/")
		if code != 200 {
			t.Fatalf("GET /: %d %s", code, body)
		}
		// Every connection has finished a run: none is left without one.
		if !strings.Contains(body, "No runs recorded yet.") && !strings.Contains(body, `data-label="Last run" class="num">never<`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed a finished run of every connection:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range names {
		if !strings.Contains(body, n) {
			t.Errorf("the page does not name connection %s", n)
		}
	}
	if strings.Contains(body, `data-label="Result">-<`) {
		t.Errorf("a connection's last run has no result on the page")
	}
	for _, want := range []string{"Connections", "Accounts needing attention", "Leads written per day", "<svg"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page has no %q", want)
		}
	}
	if n := strings.Count(body, "<rect"); n < 30 {
		t.Errorf("the chart has %d bars, want one per day of the last 30", n)
	}
	// Account names, never lead data: the sandbox's leads all have an email address.
	if m := emailLike.FindString(body); m != "" {
		t.Errorf("the page shows an email address %q", m)
	}
}
