package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// ResetState clears exactly its scope's cursors: one stream of one account, one account, or
// a whole source, and leaves the leads.
func TestResetStateClearsItsScope(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		for _, acct := range []string{"A1", "A2"} {
			for _, stream := range []string{"interactions", "daily_counts"} {
				b.write(t, PageWrite{Run: run, Account: acct, Stream: stream, Next: sources.Cursor("c-" + acct + "-" + stream),
					Leads: testLeads(acct, acct+"-"+stream)})
			}
		}
		b.write(t, PageWrite{Run: run, Source: sources.LACRM, Account: "L1", Stream: "contacts", Next: "keep",
			Leads: lacrmLeads(sources.KindContact, "x")})
		rs := b.s.(StateResetter)
		reset := func(scope ResetScope, want int64) {
			t.Helper()
			res, err := rs.ResetState(b.ctx, scope)
			if err != nil || res.Cursors != want {
				t.Fatalf("ResetState(%s) = %+v, %v; want %d cursors", scope, res, err, want)
			}
		}
		cursors := func() map[string]sources.Cursor {
			out := map[string]sources.Cursor{}
			for _, acct := range []string{"A1", "A2"} {
				for _, stream := range []string{"interactions", "daily_counts"} {
					out[acct+"/"+stream] = b.streamCursor(t, acct, stream)
				}
			}
			out["lacrm"] = b.lacrmCursor(t, "contacts")
			return out
		}

		reset(ResetScope{Source: sources.LocaliQ, Account: "A1", Stream: "daily_counts"}, 1)
		if c := cursors(); c["A1/daily_counts"] != "" || c["A1/interactions"] == "" || c["A2/daily_counts"] == "" {
			t.Fatalf("after resetting one stream of one account: %v", c)
		}
		reset(ResetScope{Source: sources.LocaliQ, Stream: "interactions"}, 2)
		if c := cursors(); c["A1/interactions"] != "" || c["A2/interactions"] != "" || c["A2/daily_counts"] == "" {
			t.Fatalf("after resetting one stream of every account: %v", c)
		}
		reset(ResetScope{Source: sources.LocaliQ}, 1)
		if c := cursors(); c["A2/daily_counts"] != "" || c["lacrm"] != "keep" {
			t.Fatalf("after resetting the source: %v (another source's cursor must stay)", c)
		}
		var leads int
		if err := b.c.r.GetContext(b.ctx, &leads, `SELECT count(*) FROM leads WHERE deleted_at IS NULL`); err != nil || leads != 5 {
			t.Fatalf("%d live leads after the resets (%v), want all 5 kept", leads, err)
		}
		if _, err := rs.ResetState(b.ctx, ResetScope{}); err == nil {
			t.Fatal("a reset without a source was accepted")
		}
	})
}

// On SQLite a reset refuses while another process holds the single-writer lock (a daemon or
// a --once run syncing into the file).
func TestResetStateRefusesWhileSQLiteIsSyncing(t *testing.T) {
	t.Parallel()
	b := setup(t, dialectCases[0].newURL)
	syncing, err := Open(b.ctx, b.url, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer syncing.Close()
	if err := syncing.(WriterLocker).LockWriter(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.(StateResetter).ResetState(b.ctx, ResetScope{Source: sources.LocaliQ}); !errors.Is(err, ErrSyncing) {
		t.Fatalf("ResetState while another sink holds the writer lock: %v, want ErrSyncing", err)
	}
}

// On PostgreSQL a reset refuses while any worker holds a live lease on an account in scope,
// and goes ahead once the lease is released, or for an account nobody holds.
func TestResetStateRefusesALiveLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := scaleWorkers(t, time.Minute, time.Minute)
	a, admin := w[0], w[1]
	slot, err := a.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, Trigger: TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.BeginRun(ctx, TriggerOnce, "", ModeIncremental)
	if err != nil {
		t.Fatal(err)
	}
	for _, acct := range []string{"L1", "L2"} {
		if cl, err := a.ClaimAccount(ctx, slot.ID, "lc", acct, ""); err != nil || !cl.Held {
			t.Fatalf("claim %s = %+v, %v", acct, cl, err)
		}
		if _, err := a.WritePage(ctx, scalePage(run, acct, "c1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ReleaseAccount(ctx, "lc", "L2", true); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ResetState(ctx, ResetScope{Source: "lc", Account: "L1"}); !errors.Is(err, ErrSyncing) {
		t.Fatalf("reset of a leased account: %v, want ErrSyncing", err)
	}
	if _, err := admin.ResetState(ctx, ResetScope{Source: "lc"}); !errors.Is(err, ErrSyncing) {
		t.Fatalf("reset of a source with a leased account: %v, want ErrSyncing", err)
	}
	if res, err := admin.ResetState(ctx, ResetScope{Source: "lc", Account: "L2"}); err != nil || res.Cursors != 1 {
		t.Fatalf("reset of a released account = %+v, %v", res, err)
	}
	if _, err := a.ReleaseAccount(ctx, "lc", "L1", true); err != nil {
		t.Fatal(err)
	}
	if res, err := admin.ResetState(ctx, ResetScope{Source: "lc"}); err != nil || res.Cursors != 1 {
		t.Fatalf("reset after the release = %+v, %v", res, err)
	}
}
