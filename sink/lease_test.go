package sink

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/sources"
)

// scaleWorkers opens Postgres sinks on one schema, each a worker with its own identity and
// its lease duration.
func scaleWorkers(t *testing.T, leases ...time.Duration) []*Postgres {
	t.Helper()
	dsn, _ := pgtest.Schema(t)
	var out []*Postgres
	for i, lease := range leases {
		s, err := Open(context.Background(), dsn, Options{Worker: "w" + string(rune('a'+i)), LeaseDuration: lease})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s.(*Postgres))
	}
	return out
}

// expireLease makes the lease on source/account run out now, as it does when its holder
// stops heartbeating for a lease duration, without the test waiting that long (or a loaded
// machine making a short lease run out before the test means it to).
func expireLease(t *testing.T, p *Postgres, source, account string) {
	t.Helper()
	tag, err := p.pool.Exec(context.Background(), `UPDATE account_leases SET expires_at = clock_timestamp() - interval '1 second'
WHERE source = $1 AND account_id = $2 AND owner IS NOT NULL`, source, account)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("expire the lease on %s/%s: %v (%d rows)", source, account, err, tag.RowsAffected())
	}
}

func scalePage(run RunID, acct, cursor string) PageWrite {
	return PageWrite{Run: run, Source: "lc", Stream: testStream, Account: acct, Next: sources.Cursor(cursor),
		Leads: []sources.Lead{{ID: "lead-" + cursor, Kind: "contact"}}}
}

func TestLeaseFencesPageCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Both leases outlast the test, however slow a loaded machine makes it; a's expiry is
	// made to happen (expireLease) when the test has a stop heartbeating.
	w := scaleWorkers(t, time.Minute, time.Minute)
	a, b := w[0], w[1]
	slot, err := a.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, Trigger: TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.BeginRun(ctx, TriggerOnce, "", ModeIncremental)
	if err != nil {
		t.Fatal(err)
	}
	// Without a lease, nothing is written.
	if _, err := a.WritePage(ctx, scalePage(run, "L1", "c0")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("write without a lease: %v, want ErrLeaseLost", err)
	}
	if cl, err := a.ClaimAccount(ctx, slot.ID, "lc", "L1", ""); err != nil || !cl.Held {
		t.Fatalf("first claim = %+v, %v", cl, err)
	}
	if cl, err := b.ClaimAccount(ctx, slot.ID, "lc", "L1", ""); err != nil || cl.Held || cl.Owner != "wa" {
		t.Fatalf("second worker's claim of a held lease = %+v, %v; want refused, held by wa", cl, err)
	}
	if _, err := a.WritePage(ctx, scalePage(run, "L1", "c1")); err != nil {
		t.Fatalf("holder's write: %v", err)
	}
	if _, err := b.WritePage(ctx, scalePage(run, "L1", "c-b")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("non-holder's write: %v, want ErrLeaseLost", err)
	}
	if err := b.AccountSynced(ctx, run, "lc", "L1", nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("non-holder's account outcome: %v, want ErrLeaseLost", err)
	}
	if err := b.StreamSynced(ctx, run, StreamResult{Source: "lc", Account: "L1", Stream: testStream, Outcome: OutcomeOK}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("non-holder's stream outcome: %v, want ErrLeaseLost", err)
	}
	if err := a.StreamSynced(ctx, run, StreamResult{Source: "lc", Account: "L1", Stream: testStream, Outcome: OutcomeOK}); err != nil {
		t.Fatalf("holder's stream outcome: %v", err)
	}

	// a stops heartbeating (a paused or partitioned worker): b takes over once it expires.
	expireLease(t, a, "lc", "L1")
	if cl, err := b.ClaimAccount(ctx, slot.ID, "lc", "L1", ""); err != nil || !cl.Held {
		t.Fatalf("b's claim of the expired lease = %+v, %v; want held", cl, err)
	}
	// The old holder wakes up: it cannot advance the cursor any more.
	if _, err := a.WritePage(ctx, scalePage(run, "L1", "c-stale")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale holder's write: %v, want ErrLeaseLost", err)
	}
	if ok, err := a.Heartbeat(ctx, slot.ID, "lc", "L1"); err != nil || ok {
		t.Fatalf("stale holder's heartbeat = %v, %v; want lost", ok, err)
	}
	if cur, err := a.Cursor(ctx, "lc", "L1", testStream); err != nil || cur != "c1" {
		t.Fatalf("cursor = %q, %v; want c1 (the stale write must not land)", cur, err)
	}
	if _, err := b.WritePage(ctx, scalePage(run, "L1", "c2")); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	st, err := a.Status(ctx)
	if err != nil || len(st) != 1 || st[0].LeaseOwner != "wb" {
		t.Fatalf("status = %+v, %v; want L1 held by wb", st, err)
	}
	if ok, err := b.ReleaseAccount(ctx, "lc", "L1", true); err != nil || !ok {
		t.Fatalf("release = %v, %v", ok, err)
	}
	// Done in this slot: nobody syncs it again in the slot, but a new slot may.
	if cl, err := a.ClaimAccount(ctx, slot.ID, "lc", "L1", ""); err != nil || cl.Held || !cl.Done {
		t.Fatalf("claim of an account done in the slot = %+v, %v; want done", cl, err)
	}
	if st, err := a.Status(ctx); err != nil || st[0].LeaseOwner != "" || st[0].LastSyncedBy != "wb" {
		t.Fatalf("status after release = %+v, %v", st, err)
	}
	next, err := a.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, Trigger: TriggerOnce})
	if err != nil || next.ID == slot.ID {
		t.Fatalf("a's next --once run joined %+v (err %v), want a new slot (a opened %d itself)", next, err, slot.ID)
	}
	if cl, err := a.ClaimAccount(ctx, next.ID, "lc", "L1", ""); err != nil || !cl.Held {
		t.Fatalf("claim in a new slot = %+v, %v", cl, err)
	}
}

func TestSlotsAreSharedAcrossWorkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := scaleWorkers(t, time.Minute, time.Minute)
	a, b := w[0], w[1]
	tick := time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC)
	sa, err := a.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, At: tick, Trigger: TriggerCron})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, At: tick, Trigger: TriggerCron})
	if err != nil || sb.ID != sa.ID || sb.OpenedBy != "wa" {
		t.Fatalf("b's slot for the same tick = %+v, %v; want a's %+v", sb, err, sa)
	}
	if full, err := b.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotFull, At: tick, Trigger: TriggerCron}); err != nil || full.ID == sa.ID {
		t.Fatalf("the full pass of the same tick = %+v, %v; want its own slot", full, err)
	}
	// A --once run joins the open slot another worker is working through.
	once, err := a.OpenSlot(ctx, SlotRequest{Connection: "d", Kind: SlotIncremental, Trigger: TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := b.OpenSlot(ctx, SlotRequest{Connection: "d", Kind: SlotIncremental, Trigger: TriggerOnce}); err != nil || j.ID != once.ID {
		t.Fatalf("b's --once = slot %+v, %v; want to join %d", j, err, once.ID)
	}
	// Not when its opener is known dead (killed: its slot's heartbeat is still fresh): the
	// accounts it finished would be skipped, whatever changed at the vendor since.
	dead := func(w string) bool { return w == "wa" }
	if j, err := b.OpenSlot(ctx, SlotRequest{Connection: "d", Kind: SlotIncremental, Trigger: TriggerOnce, Dead: dead}); err != nil || j.ID == once.ID || j.OpenedBy != "wb" {
		t.Fatalf("b's --once beside a dead opener's slot = %+v, %v; want a new slot of its own", j, err)
	}
	if err := a.CloseSlot(ctx, once.ID); err != nil {
		t.Fatal(err)
	}
	if j, err := a.OpenSlot(ctx, SlotRequest{Connection: "d", Kind: SlotIncremental, Trigger: TriggerOnce}); err != nil || j.ID == once.ID {
		t.Fatalf("--once after the slot closed = %+v, %v; want a new slot", j, err)
	}
	if err := a.CloseSlot(ctx, sa.ID); err != nil {
		t.Fatal(err)
	}
	if sb, err := b.OpenSlot(ctx, SlotRequest{Connection: "c", Kind: SlotIncremental, At: tick, Trigger: TriggerCron}); err != nil || !sb.Closed {
		t.Fatalf("a late worker firing a completed tick = %+v, %v; want it closed", sb, err)
	}
}

func TestSQLiteAdmitsOneWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "leads.db")
	first, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := first.(WriterLocker).LockWriter(); err != nil {
		t.Fatal(err)
	}
	err = second.(WriterLocker).LockWriter()
	if !errors.Is(err, ErrSingleWriter) || !strings.Contains(err.Error(), path+".lock") ||
		!strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("second writer: %v; want ErrSingleWriter naming %s.lock and PostgreSQL", err, path)
	}
	// Readers are not writers: status still works while a worker holds the lock.
	if _, err := second.Status(ctx); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if err := second.(WriterLocker).LockWriter(); err != nil {
		t.Fatalf("lock after the first writer closed: %v", err)
	}
}
