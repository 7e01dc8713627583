package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/config"
)

// pitConn is a valid LeadConnector connection of Private Integration Tokens: no OAuth app.
const pitConn = `connections:
  - name: pits
    source: leadconnector
    auth: private_integration
    locations:
      - location_id: loc1
        token: {env: PIT_LOC1}
`

const apiKeyConn = `connections:
  - name: crm
    source: lacrm
    auth: api_key
    api_key: {env: LACRM_KEY}
`

func TestStaticAuthConfig(t *testing.T) {
	t.Parallel()
	for _, y := range []string{pitConn, apiKeyConn} {
		cfg, err := config.Parse([]byte(y), "test.yaml")
		if err != nil {
			t.Fatalf("a static-token connection without client_id: %v", err)
		}
		c := cfg.Connections[0]
		if !c.StaticAuth() {
			t.Errorf("%s: not static", c.Name)
		}
		if got := len(c.Secrets()); got != 1 {
			t.Errorf("%s: %d secrets, want the token alone", c.Name, got)
		}
	}
	tests := []struct {
		name, yaml, field string
		line              int
		msg               string
	}{
		{"pit without locations", strings.Split(pitConn, "    locations:")[0], "connections[0].locations", 2, "highlevel-api-docs#226"},
		{"pit location without id", pitConn + "      - token: {env: X}\n", "connections[0].locations[1].location_id", 8, "required"},
		{"duplicate pit location", pitConn + "      - location_id: loc1\n        token: {env: X}\n", "connections[0].locations[1].location_id", 8, `duplicate location "loc1"`},
		{"pit location without token", pitConn + "      - location_id: loc2\n", "connections[0].locations[1].token", 8, "required"},
		{"inline pit", strings.Replace(pitConn, "{env: PIT_LOC1}", "pit-abc", 1), "connections[0].locations[0].token", 7, "a secret cannot be written inline"},
		{"locations with oauth", lcConn + "    locations:\n      - location_id: a\n        token: {env: X}\n", "connections[0].locations", 7, "only with auth: private_integration"},
		{"bad auth", lcConn + "    auth: pit\n", "connections[0].auth", 7, "must be one of oauth, private_integration"},
		{"api_key without auth", lacrmConn + "    api_key: {env: K}\n", "connections[0].api_key", 6, "only with auth: api_key"},
		{"api_key auth without a key", strings.Replace(apiKeyConn, "    api_key: {env: LACRM_KEY}\n", "", 1), "connections[0].api_key", 2, "required"},
		{"oauth lacrm still needs its client", strings.Replace(apiKeyConn, "auth: api_key", "auth: oauth", 1), "connections[0].client_id", 2, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), "test.yaml")
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got %v, want a *config.Error", err)
			}
			if ce.Field != tt.field || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("got  %q (field %q, line %d)\nwant field %q, line %d, message containing %q",
					err, ce.Field, ce.Line, tt.field, tt.line, tt.msg)
			}
		})
	}
}

// A Private Integration Token must start with a lowercase "pit-": `config check` (and the
// daemon's start) says so, naming the field, without quoting the token.
func TestPITPrefixIsChecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "pit")
	if err := os.WriteFile(file, []byte("Pit-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(strings.Replace(pitConn, "{env: PIT_LOC1}", "{file: "+file+"}", 1)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Connections[0].CheckSecrets()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Field != "connections[0].locations[0].token" || !strings.Contains(ce.Msg, `lowercase "pit-"`) {
		t.Fatalf("CheckSecrets: %v", err)
	}
	if strings.Contains(err.Error(), "0123456789abcdef") {
		t.Fatalf("the error quotes the token: %v", err)
	}
	if err := os.WriteFile(file, []byte("pit-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Connections[0].CheckSecrets(); err != nil {
		t.Fatalf("a good token: %v", err)
	}
}
