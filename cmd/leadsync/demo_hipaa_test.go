package main

import (
	"database/sql"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The demo ends with one HIPAA-protected lead as leads_pii shows it, next to the names of the
// columns the view withholds on it, and never with the PII itself.
func TestDemoShowsAWithheldHIPAARow(t *testing.T) {
	t.Parallel()
	dbPath := filepath.Join(t.TempDir(), "demo.db")
	code, stdout, stderr := runCLI(t, "demo", "--db", dbPath, "--seed", "1")
	if code != exitOK {
		t.Fatalf("demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	const header = "-- A HIPAA-protected lead in leads_pii"
	_, section, ok := strings.Cut(stdout, header)
	if !ok {
		t.Fatalf("the demo shows no HIPAA lead:\n%s", stdout)
	}
	section = header + section
	key := regexp.MustCompile(`WHERE source = '([^']+)' AND account_id = '([^']+)' AND lead_id = '([^']+)';\n`).FindStringSubmatch(section)
	list := regexp.MustCompile(`(?m)^([a-z_]+(?:, [a-z_]+)*): withheld \(HIPAA\)`).FindStringSubmatch(section)
	if key == nil || list == nil {
		t.Fatalf("the HIPAA section names no lead or no withheld columns:\n%s", section)
	}

	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The withheld columns are the lead's PII columns that hold something in leads.
	var hipaa bool
	var pii [7]sql.NullString
	if err := db.QueryRow(`SELECT hipaa, first_name, last_name, email, phone, company, tags, raw FROM leads
WHERE source = ? AND account_id = ? AND lead_id = ?`, key[1], key[2], key[3]).Scan(
		&hipaa, &pii[0], &pii[1], &pii[2], &pii[3], &pii[4], &pii[5], &pii[6]); err != nil {
		t.Fatalf("the lead the demo shows: %v", err)
	}
	var want []string
	for i, c := range []string{"first_name", "last_name", "email", "phone", "company", "tags", "raw"} {
		if pii[i].Valid {
			want = append(want, c)
		}
	}
	if got := strings.Split(list[1], ", "); !hipaa || !slices.Equal(got, want) || !slices.Contains(got, "email") {
		t.Fatalf("lead %v (hipaa %v): withheld %v, want %v (with email)", key[1:], hipaa, got, want)
	}

	// No lead's name, email, phone or company is in the section; no email or phone anywhere.
	rows, err := db.Query(`SELECT kind, value FROM (
    SELECT 'contact' AS kind, first_name AS value FROM leads UNION SELECT 'contact', last_name FROM leads
    UNION SELECT 'contact', company FROM leads
    UNION SELECT 'reach', email FROM leads UNION SELECT 'reach', phone FROM leads)
WHERE value IS NOT NULL AND value <> ''`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	values := 0
	for rows.Next() {
		var kind, v string
		if err := rows.Scan(&kind, &v); err != nil {
			t.Fatal(err)
		}
		values++
		word := regexp.MustCompile(`(?:^|[^\pL\pN])` + regexp.QuoteMeta(v) + `(?:[^\pL\pN]|$)`)
		if word.MatchString(section) {
			t.Errorf("the HIPAA section shows a lead's %q", v)
		}
		if kind == "reach" && strings.Contains(stdout, v) {
			t.Errorf("the demo prints a lead's %q", v)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if values < 100 {
		t.Fatalf("only %d PII values in the demo warehouse", values)
	}
}
