package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/simkit"
	_ "github.com/leadsync/leadsync/sources/all" // the written config names every vendor
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := stderr.String()
	for _, name := range []string{"addr", "seed", "locations", "contacts", "forbidden-locations", "advertisers",
		"interactions", "lacrm-contacts", "lacrm-pipeline-items", "token-ttl", "fault-429", "fault-5xx",
		"fault-reset", "fault-truncate", "latency", "latency-rate", "drop-refresh", "write-config", "warehouse"} {
		if !strings.Contains(help, "-"+name+" ") && !strings.Contains(help, "-"+name+"\n") {
			t.Errorf("--help does not document -%s", name)
		}
	}
}

func TestServesOnLoopbackAndWritesAConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--locations", "2", "--contacts", "10",
			"--write-config", dir}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var base string
	deadline := time.After(30 * time.Second)
	lines := make(chan string)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for base == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("crmsim stopped before serving")
			}
			if rest, ok := strings.CutPrefix(l, "crmsim serving on "); ok {
				base, _, _ = strings.Cut(rest, " ")
			}
		case <-deadline:
			t.Fatal("crmsim did not start")
		}
	}
	go func() {
		for range lines {
		}
	}()
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("not on loopback: %q", base)
	}
	resp, err := http.Get(base + "/_admin/truth")
	if err != nil {
		t.Fatal(err)
	}
	var truth []simkit.AccountTruth
	err = json.NewDecoder(resp.Body).Decode(&truth)
	resp.Body.Close()
	if err != nil || len(truth) == 0 {
		t.Fatalf("ground truth: %v, %d accounts", err, len(truth))
	}
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if len(cfg.Connections) != 3 {
		t.Fatalf("connections: %d", len(cfg.Connections))
	}
	for _, c := range cfg.Connections {
		if _, err := c.ClientSecret.Resolve(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("crmsim did not stop on cancel")
	}
}
