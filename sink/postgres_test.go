package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leadsync/leadsync/sources"
)

func setupPostgres(t *testing.T) (*bundle, *Postgres) {
	t.Helper()
	b := setup(t, dialectCases[1].newURL)
	return b, b.s.(*Postgres)
}

func TestPostgresPIIComments(t *testing.T) {
	t.Parallel()
	b, p := setupPostgres(t)
	rows, err := p.Pool().Query(b.ctx, `SELECT attname FROM pg_attribute
WHERE attrelid = 'leads'::regclass AND col_description(attrelid, attnum) = 'PII' ORDER BY attnum`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := sources.PIIFields; !slices.Equal(got, want) {
		t.Errorf("columns commented PII = %v, want %v", got, want)
	}
	var comment *string
	if err := p.Pool().QueryRow(b.ctx, `SELECT col_description('rejected_records'::regclass,
    (SELECT attnum FROM pg_attribute WHERE attrelid = 'rejected_records'::regclass AND attname = 'raw'))`).Scan(&comment); err != nil || comment == nil || *comment != "PII" {
		t.Errorf("rejected_records.raw comment = %v, %v; want PII", comment, err)
	}
}

// TestPostgresAnalystRole proves an analyst role reads the de-identified views and cannot
// read leads.email.
func TestPostgresAnalystRole(t *testing.T) {
	t.Parallel()
	b, p := setupPostgres(t)
	leads := testLeads("USA_1", "open", "secret")
	leads[1].HIPAA = true
	b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Leads: leads})

	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	role := "t_analyst_" + hex.EncodeToString(rnd)
	if _, err := p.Pool().Exec(b.ctx, "CREATE ROLE "+role+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, b.url)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = conn.Exec(ctx, "DROP ROLE "+role)
	})
	if err := p.GrantAnalyst(b.ctx, role); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(b.ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(b.ctx)
	if _, err := conn.Exec(b.ctx, "SET ROLE "+role); err != nil {
		t.Fatal(err)
	}
	var email *string
	err = conn.QueryRow(b.ctx, `SELECT email FROM leads LIMIT 1`).Scan(&email)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "42501" {
		t.Fatalf("analyst reading leads.email: %v, want permission denied (42501)", err)
	}
	for _, tbl := range []string{"leads_current", "accounts", "sync_state", "lead_daily_counts", "rejected_records"} {
		if _, err := conn.Exec(b.ctx, "SELECT 1 FROM "+tbl); err == nil {
			t.Errorf("analyst can read %s", tbl)
		}
	}
	rows, err := conn.Query(b.ctx, `SELECT lead_id, email FROM leads_deidentified ORDER BY lead_id`)
	if err != nil {
		t.Fatalf("analyst reading leads_deidentified: %v", err)
	}
	type row struct {
		ID    string  `db:"lead_id"`
		Email *string `db:"email"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Email == nil || got[1].Email != nil {
		t.Errorf("analyst sees %+v; want the open lead's email and a NULL for the HIPAA one", got)
	}
	var n int
	if err := conn.QueryRow(b.ctx, `SELECT sum(leads) FROM lead_counts_by_day`).Scan(&n); err != nil || n != 2 {
		t.Errorf("analyst reading lead_counts_by_day: %d, %v", n, err)
	}
}
