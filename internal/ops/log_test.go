package ops

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
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
