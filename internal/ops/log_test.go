package ops

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		format string
		json   bool
	}{{"auto", true}, {"", true}, {"json", true}, {"text", false}} {
		var buf bytes.Buffer
		log := NewLogger(&buf, slog.LevelInfo, tt.format)
		log.Debug("hidden")
		log.Info("synced", slog.String("account", "LOC1"))
		line := strings.TrimSpace(buf.String())
		if strings.Contains(line, "hidden") || strings.Count(line, "\n") != 0 {
			t.Errorf("format %q: debug line logged at info level: %q", tt.format, line)
		}
		if got := json.Valid([]byte(line)); got != tt.json {
			t.Errorf("format %q (not a terminal): JSON %v, want %v: %q", tt.format, got, tt.json, line)
		}
		if !strings.Contains(line, "LOC1") {
			t.Errorf("format %q: attribute missing: %q", tt.format, line)
		}
	}
}

// JSON durations are float seconds, in groups too; the text format keeps Go's strings.
func TestLogDurationsInSeconds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, "json")
	log.Info("run finished", slog.Duration("took", 1500*time.Millisecond), slog.Any("wait", 250*time.Microsecond),
		slog.Group("http", slog.Duration("latency", 2*time.Minute)), slog.Int("leads", 3))
	var rec struct {
		Took  float64 `json:"took"`
		Wait  float64 `json:"wait"`
		Leads int     `json:"leads"`
		HTTP  struct {
			Latency float64 `json:"latency"`
		} `json:"http"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if rec.Took != 1.5 || rec.Wait != 0.00025 || rec.HTTP.Latency != 120 || rec.Leads != 3 {
		t.Errorf("durations not in seconds (or other values changed): %s", buf.Bytes())
	}

	buf.Reset()
	NewLogger(&buf, slog.LevelInfo, "text").Info("run finished", slog.Duration("took", 1500*time.Millisecond))
	if !strings.Contains(buf.String(), "took=1.5s") {
		t.Errorf("text format: %q, want took=1.5s", buf.String())
	}
}
