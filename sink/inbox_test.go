package sink

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

func inboxEvent(id string) InboxEvent {
	return InboxEvent{Vendor: "leadconnector", WebhookID: id, EventType: "ContactCreate", Account: "loc-1",
		Kind: "contact", Op: "upsert", RecordID: "c-" + id, VendorUpdatedAt: t0, OccurredAt: t0.Add(time.Second),
		Body: []byte(`{"type":"ContactCreate","webhookId":"` + id + `","x":"\xff"}`)}
}

func (b *bundle) inboxRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.c.r.GetContext(b.ctx, &n, `SELECT count(*) FROM webhook_inbox`); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInbox: an event is stored once, with its bytes as given; a replay or a concurrent copy
// inserts nothing; Seen and the backlog see what is stored; the down migration drops it all.
func TestInbox(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		in := b.s.(Inbox)
		if n, oldest, err := in.InboxBacklog(b.ctx); n != 0 || !oldest.IsZero() || err != nil {
			t.Fatalf("backlog of an empty inbox = %d, %v, %v", n, oldest, err)
		}
		if seen, err := in.InboxSeen(b.ctx, "leadconnector", "wh-1"); seen || err != nil {
			t.Fatalf("seen before insert = %v, %v", seen, err)
		}
		ev := inboxEvent("wh-1")
		if ok, err := in.InboxInsert(b.ctx, ev); !ok || err != nil {
			t.Fatalf("insert = %v, %v", ok, err)
		}
		received := b.clock.Stored()
		b.clock.Advance(time.Minute)
		if ok, err := in.InboxInsert(b.ctx, ev); ok || err != nil {
			t.Fatalf("replayed insert = %v, %v; want not inserted", ok, err)
		}
		if seen, err := in.InboxSeen(b.ctx, "leadconnector", "wh-1"); !seen || err != nil {
			t.Fatalf("seen after insert = %v, %v", seen, err)
		}
		if seen, _ := in.InboxSeen(b.ctx, "lacrm", "wh-1"); seen {
			t.Fatal("another vendor's id is seen")
		}

		var row struct {
			EventType string   `db:"event_type"`
			Account   *string  `db:"account_id"`
			Kind      *string  `db:"kind"`
			Op        string   `db:"op"`
			Record    *string  `db:"record_id"`
			Updated   nullTime `db:"vendor_updated_at"`
			Occurred  nullTime `db:"occurred_at"`
			Received  nullTime `db:"received_at"`
			Body      []byte   `db:"body"`
			Applied   nullTime `db:"applied_at"`
			Attempts  int      `db:"attempts"`
		}
		if err := b.c.r.GetContext(b.ctx, &row, `SELECT event_type, account_id, kind, op, record_id, vendor_updated_at,
    occurred_at, received_at, body, applied_at, attempts FROM webhook_inbox`); err != nil {
			t.Fatal(err)
		}
		if row.EventType != "ContactCreate" || *row.Account != "loc-1" || *row.Kind != "contact" || row.Op != "upsert" ||
			*row.Record != "c-wh-1" || !row.Updated.Equal(t0) || !row.Occurred.Equal(t0.Add(time.Second)) ||
			!row.Received.Equal(received) || !row.Applied.IsZero() || row.Attempts != 0 {
			t.Errorf("stored row = %+v", row)
		}
		if !bytes.Equal(row.Body, ev.Body) {
			t.Errorf("stored body = %q, want the bytes as given %q", row.Body, ev.Body)
		}

		// An ignored event: no kind, account or record.
		ign := InboxEvent{Vendor: "lacrm", WebhookID: "h.0", EventType: "Event.Create", Op: "ignore", Body: []byte(`{}`)}
		if ok, err := in.InboxInsert(b.ctx, ign); !ok || err != nil {
			t.Fatalf("insert ignored = %v, %v", ok, err)
		}
		var nulls int
		if err := b.c.r.GetContext(b.ctx, &nulls, `SELECT count(*) FROM webhook_inbox
WHERE vendor = 'lacrm' AND account_id IS NULL AND kind IS NULL AND record_id IS NULL AND occurred_at IS NULL`); err != nil || nulls != 1 {
			t.Errorf("ignored event stored with NULLs: %d rows, %v", nulls, err)
		}
		for _, bad := range []InboxEvent{{Vendor: "lacrm", Op: "upsert", Body: []byte(`{}`)}, {Vendor: "lacrm", WebhookID: "x", Op: "explode", Body: []byte(`{}`)}} {
			if _, err := in.InboxInsert(b.ctx, bad); err == nil {
				t.Errorf("insert %+v: no error", bad)
			}
		}

		// One delivery's events go in together; those stored already are skipped.
		n, err := in.InboxInsertAll(b.ctx, []InboxEvent{inboxEvent("wh-1"), inboxEvent("wh-2"), inboxEvent("wh-3")})
		if n != 2 || err != nil {
			t.Fatalf("insert all = %d, %v; want 2", n, err)
		}
		if pending, oldest, err := in.InboxBacklog(b.ctx); pending != 4 || !oldest.Equal(received) || err != nil {
			t.Errorf("backlog = %d, %v, %v; want 4 since %v", pending, oldest, err, received)
		}
		if _, err := b.c.w.ExecContext(b.ctx, b.c.q(`UPDATE webhook_inbox SET applied_at = ? WHERE webhook_id = 'wh-1'`), b.c.ts(b.clock.Now())); err != nil {
			t.Fatal(err)
		}
		if pending, oldest, err := in.InboxBacklog(b.ctx); pending != 3 || !oldest.Equal(received.Add(time.Minute)) || err != nil {
			t.Errorf("backlog after one applied = %d, %v, %v; want 3 since %v", pending, oldest, err, received.Add(time.Minute))
		}

		// Copies racing past Seen meet at the unique key: one is stored.
		var wg sync.WaitGroup
		results := make(chan bool, 8)
		for range 8 {
			wg.Go(func() {
				ok, err := in.InboxInsert(b.ctx, inboxEvent("wh-race"))
				if err != nil {
					t.Error(err)
				}
				results <- ok
			})
		}
		wg.Wait()
		close(results)
		won := 0
		for ok := range results {
			if ok {
				won++
			}
		}
		if won != 1 || b.inboxRows(t) != 5 {
			t.Errorf("8 concurrent copies: %d inserted, %d rows; want 1 and 5", won, b.inboxRows(t))
		}

		if _, err := b.c.migrations.Goose.DownTo(b.ctx, 10); err != nil {
			t.Fatalf("migrate down to 10: %v", err)
		}
		if _, _, err := in.InboxBacklog(b.ctx); err == nil {
			t.Error("webhook_inbox survived the down migration")
		}
		if _, err := b.c.migrations.Goose.Up(b.ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
		if b.inboxRows(t) != 0 {
			t.Error("rows after down and up")
		}
	})
}

// TestPostgresInboxWorkers: two warehouses (two workers' processes) on one database storing
// the same events: each is stored once.
func TestPostgresInboxWorkers(t *testing.T) {
	t.Parallel()
	b, _ := setupPostgres(t)
	other, err := open(b.ctx, b.url, Options{Logger: quiet, Worker: "w2"}, modeMigrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	var wg sync.WaitGroup
	var mu sync.Mutex
	inserted := 0
	for _, in := range []Inbox{b.s.(Inbox), other.(Inbox)} {
		wg.Go(func() {
			for i := range 20 {
				ok, err := in.InboxInsert(b.ctx, inboxEvent(fmt.Sprint("wh-", i)))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					inserted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if inserted != 20 || b.inboxRows(t) != 20 {
		t.Errorf("two workers storing 20 events: %d inserted, %d rows; want 20", inserted, b.inboxRows(t))
	}
}
