package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
	"github.com/leadsync/leadsync/store"
)

// The sandbox's "rotate the refresh token but drop the response" fault, against the real
// LACRM fake (which revokes a grant whose refresh token is presented twice): the grant it
// hits ends in needs_reauth after one detected reuse, the store stops calling the vendor for
// it, and another grant of the same store keeps refreshing and working.
func TestSandboxDroppedRefreshResponseIsolatesTheGrant(t *testing.T) {
	t.Parallel()
	srv := lacrmtest.NewServer(lacrmtest.Options{Users: []lacrmtest.User{{Name: "a@example.com"}, {Name: "b@example.com"}}})
	t.Cleanup(srv.Close)
	key := make([]byte, 32)
	key[0] = 7
	// The store's clock runs two hours ahead: every saved token looks expired and is refreshed.
	ahead := func() time.Time { return time.Now().Add(2 * time.Hour) }
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "tokens.db"), store.Options{Key: key, Clock: ahead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	for conn, user := range map[string]string{"conn-a": "a@example.com", "conn-b": "b@example.com"} {
		p := srv.Authorize(user)
		if err := st.Save(ctx, conn, &oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, Expiry: p.Expiry}); err != nil {
			t.Fatal(err)
		}
	}
	refresher := lacrm.Config{TokenURL: srv.URL + "/oauth/token.php", ClientID: srv.ClientID(), ClientSecret: srv.ClientSecret()}.Refresher()
	a, b := st.Tokens("conn-a", refresher).Grant(), st.Tokens("conn-b", refresher).Grant()

	srv.Faults().Set(simkit.FaultSettings{DropRefreshResponses: 1})
	if _, err := a.Token(ctx); err == nil || errors.Is(err, sources.ErrNeedsReauth) {
		t.Fatalf("the dropped answer must be a transient failure first, got %v", err)
	}
	_, err = a.Token(ctx)
	if !errors.Is(err, sources.ErrNeedsReauth) {
		t.Fatalf("after a lost rotation the grant must need re-authorization, got %v", err)
	}
	calls := srv.Counters().Requests("oauth/token", 0)
	for range 3 {
		if _, err := a.Token(ctx); !errors.Is(err, sources.ErrNeedsReauth) {
			t.Fatalf("needs_reauth must stick: %v", err)
		}
	}
	if got := srv.Counters().Requests("oauth/token", 0); got != calls {
		t.Fatalf("the store kept calling the token endpoint for a dead grant: %d → %d", calls, got)
	}
	if n := srv.Counters().Get(simkit.CountRefreshReuse); n != 1 {
		t.Fatalf("refresh_reuse = %d, want exactly the one detected reuse", n)
	}
	tok, err := b.Token(ctx)
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("the other grant must keep working: %v", err)
	}
	gs, err := st.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if want := g.Connection == "conn-a"; g.NeedsReauth != want {
			t.Errorf("%s: needs_reauth = %v, want %v", g.Connection, g.NeedsReauth, want)
		}
	}
}
