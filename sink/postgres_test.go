package sink

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

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
