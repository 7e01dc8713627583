package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/store"
)

// A static token refused by the vendor puts its connection in needs_rotation, seen by every
// process on the store, until the secret holds another token; the store never keeps the
// token itself.
func TestStaticTokenRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		secret := filepath.Join(t.TempDir(), "pit")
		write := func(v string) {
			if err := os.WriteFile(secret, []byte(v+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write("pit-old-0123456789")
		tok := store.StaticToken{Conn: "agency-pit", Credential: "loc-1", Where: "file " + secret,
			Fix: "rotate the Private Integration token in HighLevel",
			Secret: func() (string, error) {
				b, err := os.ReadFile(secret)
				return strings.TrimSpace(string(b)), err
			}}
		ctx := context.Background()
		creds := tb.st.Static(tok)
		got, err := creds.Token(ctx)
		if err != nil || got.AccessToken != "pit-old-0123456789" || !got.Expiry.IsZero() {
			t.Fatalf("Token: %v %v", got, err)
		}
		creds.Invalidate(got)
		// Another process sees the refusal.
		other := tb.open(t).Static(tok)
		_, err = other.Token(ctx)
		var re *store.RotationError
		if !errors.Is(err, sources.ErrNeedsRotation) || !errors.As(err, &re) ||
			!strings.Contains(err.Error(), "rotate the Private Integration token in HighLevel, then update the secret at file "+secret) {
			t.Fatalf("after the refusal: %v", err)
		}
		if strings.Contains(err.Error(), "pit-old") {
			t.Fatalf("the error shows the token: %v", err)
		}
		rej, err := tb.st.StaticRejections(ctx)
		if err != nil || len(rej) != 1 || rej[0].Connection != "agency-pit" || rej[0].Credential != "loc-1" {
			t.Fatalf("StaticRejections: %+v %v", rej, err)
		}
		// No token, in any form, is in the store's tables.
		for _, table := range []string{"static_rejections"} {
			rows, err := tb.raw.Query("SELECT * FROM " + table)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for _, v := range vals {
					if s, ok := v.(string); ok && strings.Contains(s, "pit-") {
						t.Errorf("%s holds a token: %q", table, s)
					}
				}
			}
			rows.Close()
		}
		// The operator puts a new token in the secret: the next use takes it, and the state clears.
		write("pit-new-9876543210")
		if got, err := other.Token(ctx); err != nil || got.AccessToken != "pit-new-9876543210" {
			t.Fatalf("after the rotation: %v %v", got, err)
		}
		if rej, err := tb.st.StaticRejections(ctx); err != nil || len(rej) != 0 {
			t.Fatalf("after the rotation, still: %+v %v", rej, err)
		}
	})
}
