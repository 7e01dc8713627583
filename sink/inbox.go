package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// InboxEvent is one verified webhook event to store in webhook_inbox (migration 00011). Its
// fields are internal/webhook's Event, which this package does not import.
type InboxEvent struct {
	Vendor    string
	WebhookID string // with Vendor, the event's unique key
	EventType string // the vendor's own type
	Account   string // "" is stored as NULL
	Kind      string // "" is stored as NULL (an ignored event)
	Op        string // upsert, delete, stage, status, install, uninstall or ignore
	RecordID  string // "" is stored as NULL
	// VendorUpdatedAt and OccurredAt are the vendor's times; zero is NULL.
	VendorUpdatedAt time.Time
	OccurredAt      time.Time
	// Body is the request's bytes exactly as verified. It holds PII.
	Body []byte
}

// Inbox is the durable webhook inbox. *SQLite and *Postgres implement it; callers
// type-assert a Sink to it.
type Inbox interface {
	// InboxInsert stores ev unless an event with its vendor and webhook id is stored already
	// (a replay, or another worker's copy): then inserted is false and nothing is written.
	InboxInsert(ctx context.Context, ev InboxEvent) (inserted bool, err error)
	// InboxInsertAll stores the events of one delivery in one transaction, each unless
	// stored already, and returns how many it inserted.
	InboxInsertAll(ctx context.Context, evs []InboxEvent) (inserted int, err error)
	// InboxSeen reports whether an event with this vendor and webhook id is stored. It only
	// looks (webhook.ReplayChecker's contract).
	InboxSeen(ctx context.Context, vendor, webhookID string) (bool, error)
	// InboxBacklog counts the events not yet applied, and gives when the oldest of them was
	// received (zero when none).
	InboxBacklog(ctx context.Context) (pending int64, oldest time.Time, err error)
}

var (
	_ Inbox = (*SQLite)(nil)
	_ Inbox = (*Postgres)(nil)
)

// inboxOps are the values the op column's CHECK constraint allows.
var inboxOps = map[string]bool{
	"upsert": true, "delete": true, "stage": true, "status": true, "install": true, "uninstall": true, "ignore": true,
}

const sqlInboxInsert = `INSERT INTO webhook_inbox
    (vendor, webhook_id, event_type, account_id, kind, op, record_id, vendor_updated_at, occurred_at, received_at, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (vendor, webhook_id) DO NOTHING`

func checkInboxEvent(ev InboxEvent) error {
	switch {
	case ev.Vendor == "" || ev.WebhookID == "":
		return errors.New("sink: inbox event without vendor or webhook id")
	case !inboxOps[ev.Op]:
		return fmt.Errorf("sink: inbox event %s/%s: unknown op %q", ev.Vendor, ev.WebhookID, ev.Op)
	case ev.Body == nil:
		return fmt.Errorf("sink: inbox event %s/%s without a body", ev.Vendor, ev.WebhookID)
	}
	return nil
}

// InboxInsert implements Inbox.
func (c *core) InboxInsert(ctx context.Context, ev InboxEvent) (bool, error) {
	n, err := c.InboxInsertAll(ctx, []InboxEvent{ev})
	return n == 1, err
}

// InboxInsertAll implements Inbox.
func (c *core) InboxInsertAll(ctx context.Context, evs []InboxEvent) (int, error) {
	for _, ev := range evs {
		if err := checkInboxEvent(ev); err != nil {
			return 0, err
		}
	}
	now := c.ts(c.clock())
	inserted := 0
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		for _, ev := range evs {
			res, err := tx.ExecContext(ctx, c.q(sqlInboxInsert), ev.Vendor, ev.WebhookID, validText(ev.EventType),
				nullString(ev.Account), nullString(ev.Kind), ev.Op, nullString(ev.RecordID),
				c.ts(ev.VendorUpdatedAt), c.ts(ev.OccurredAt), now, ev.Body)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			inserted += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sink: inbox insert: %w", err)
	}
	return inserted, nil
}

// InboxSeen implements Inbox.
func (c *core) InboxSeen(ctx context.Context, vendor, webhookID string) (bool, error) {
	var one int
	err := c.r.GetContext(ctx, &one, c.q(`SELECT 1 FROM webhook_inbox WHERE vendor = ? AND webhook_id = ?`), vendor, webhookID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sink: inbox seen: %w", err)
	}
	return true, nil
}

// InboxBacklog implements Inbox. The oldest pending row is the one of the lowest id, which
// the pending index gives without a scan.
func (c *core) InboxBacklog(ctx context.Context) (int64, time.Time, error) {
	var n int64
	if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL`); err != nil {
		return 0, time.Time{}, fmt.Errorf("sink: inbox backlog: %w", err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	var oldest nullTime
	err := c.r.GetContext(ctx, &oldest, `SELECT received_at FROM webhook_inbox WHERE applied_at IS NULL ORDER BY id LIMIT 1`)
	if err != nil && !errors.Is(err, sql.ErrNoRows) { // applied between the two reads
		return 0, time.Time{}, fmt.Errorf("sink: inbox backlog: %w", err)
	}
	return n, oldest.Time, nil
}
