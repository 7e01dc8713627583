package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

// withDictScopes asks for the dictionaries' scopes explicitly, so these tests do not
// depend on what DefaultScopes holds.
func withDictScopes(c *Config) {
	c.Scopes = []string{"contacts.readonly", "oauth.readonly", "oauth.write", ScopeCustomFields, ScopeUsers}
}

// readAll reads one stream of an account to its end.
func (b *testBundle) readAll(t *testing.T, acct sources.Account, stream string) ([]sources.Page, error) {
	t.Helper()
	var pages []sources.Page
	for p, err := range b.src.Read(context.Background(), acct, stream, "", sources.ReadOptions{}) {
		if err != nil {
			return pages, err
		}
		pages = append(pages, p)
	}
	return pages, nil
}

// dictionary reads both dictionary streams of an account: its entries by kind:id.
func (b *testBundle) dictionary(t *testing.T, acct sources.Account) map[string]sources.DictEntry {
	t.Helper()
	out := map[string]sources.DictEntry{}
	for _, stream := range []string{StreamCustomFields, StreamUsers} {
		pages, err := b.readAll(t, acct, stream)
		if err != nil {
			t.Fatalf("account %s stream %s: %v", acct.ID, stream, err)
		}
		if len(pages) != 1 || pages[0].Next != "" || len(pages[0].Rejected) != 0 || len(pages[0].Leads) != 0 {
			t.Fatalf("stream %s: want one complete page of entries, got %d pages", stream, len(pages))
		}
		for _, e := range pages[0].Dictionary {
			out[e.Kind+":"+e.ID] = e
		}
	}
	return out
}

func TestDictionaryStreamsAreRegistered(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 1}, nil)
	var names []string
	for _, st := range b.src.Streams() {
		names = append(names, st.Name)
		if (st.Name == StreamCustomFields || st.Name == StreamUsers) && (st.Mode != sources.FullRefresh || st.Table != sources.TableDictionary) {
			t.Errorf("stream %+v", st)
		}
	}
	if i, j, k := slices.Index(names, StreamContacts), slices.Index(names, StreamCustomFields), slices.Index(names, StreamUsers); i < 0 || j < i || k < j {
		t.Fatalf("stream order %v", names)
	}
	if got := b.src.NeededScopes(StreamUsers); !slices.Equal(got, []string{"oauth.readonly", "oauth.write", ScopeUsers}) {
		t.Errorf("users need %v", got)
	}
	if got := b.src.NeededScopes(StreamCustomFields); !slices.Equal(got, []string{ScopeCustomFields, "oauth.readonly", "oauth.write"}) {
		t.Errorf("custom_fields need %v", got)
	}
}

// TestDictionariesEqualTheTruth: both streams of every location, a forbidden one's included,
// are the fake's dictionaries, entry for entry, under both API versions; after the agency
// edits them, the next full refresh reads the new state.
func TestDictionariesEqualTheTruth(t *testing.T) {
	t.Parallel()
	for _, version := range []string{V3, V2021} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			b := setup(t, lctest.Options{Locations: 3, ContactsPerLocation: 5, ForbiddenLocations: 1}, func(c *Config) {
				withDictScopes(c)
				c.APIVersion = version
			})
			accts := b.accounts(t)
			for _, acct := range accts {
				got := b.dictionary(t, acct)
				checkDictionary(t, b, acct, got)
			}
			// The forbidden location still refuses its contacts.
			if _, err := b.pass(t, accts[2], "", sources.ReadOptions{}, 0); !errors.As(err, new(*sources.RestrictedError)) {
				t.Fatalf("contacts of the forbidden location: %v", err)
			}

			loc := accts[0].ID
			added, err := b.srv.AddCustomField(loc, lctest.NewCustomField{Model: lctest.ModelOpportunity, Name: "Lead score", DataType: "NUMERICAL"})
			if err != nil {
				t.Fatal(err)
			}
			fields := b.srv.CustomFieldIDs(loc, lctest.ModelContact)
			renamed, deleted := fields[0], fields[1]
			if err := b.srv.RenameCustomField(loc, renamed, "Heard of us through"); err != nil {
				t.Fatal(err)
			}
			if err := b.srv.DeleteCustomField(loc, deleted); err != nil {
				t.Fatal(err)
			}
			user, err := b.srv.AddUser(loc, "admin")
			if err != nil {
				t.Fatal(err)
			}
			gone := b.srv.UserIDs(loc)[1]
			if err := b.srv.DeleteUser(loc, gone); err != nil {
				t.Fatal(err)
			}
			got := b.dictionary(t, accts[0])
			checkDictionary(t, b, accts[0], got)
			if got["custom_field:"+renamed].Name != "Heard of us through" || got["custom_field:"+added].Category != "opportunity" ||
				got["user:"+user].Category != "admin" {
				t.Fatalf("the edits did not arrive: %v", got)
			}
			if _, ok := got["custom_field:"+deleted]; ok {
				t.Fatal("a deleted custom field is still listed")
			}
			if _, ok := got["user:"+gone]; ok {
				t.Fatal("a deleted user is still listed")
			}
		})
	}
}

// checkDictionary compares an account's entries with the fake's truth and its definitions.
func checkDictionary(t *testing.T, b *testBundle, acct sources.Account, got map[string]sources.DictEntry) {
	t.Helper()
	var want []string
	for _, r := range truthOf(b, acct.ID).Records {
		if r.Table == sources.TableDictionary && (strings.HasPrefix(r.ID, sources.DictCustomField+":") || strings.HasPrefix(r.ID, sources.DictUser+":")) {
			want = append(want, r.ID)
		}
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) || len(want) == 0 {
		t.Fatalf("account %s: entries %v, truth %v", acct.ID, keys, want)
	}
	for _, cf := range b.srv.CustomFields(acct.ID, "") {
		e := got["custom_field:"+cf.ID]
		var d struct {
			FieldKey        string   `json:"fieldKey"`
			PicklistOptions []string `json:"picklistOptions"`
		}
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatalf("field %s: detail %s: %v", cf.ID, e.Detail, err)
		}
		if e.Name != cf.Name || e.DataType != cf.DataType || e.Category != cf.Model || e.Position != cf.Position ||
			d.FieldKey != cf.FieldKey || !slices.Equal(d.PicklistOptions, cf.PicklistOptions) || e.ParentID != "" {
			t.Errorf("field %s: entry %+v detail %s, vendor %+v", cf.ID, e, e.Detail, cf)
		}
	}
	for _, u := range b.srv.Users(acct.ID) {
		e := got["user:"+u.ID]
		if e.Name != u.Name || e.Category != u.Roles.Role || string(e.Detail) != `{"roleType":"`+u.Roles.Type+`"}` {
			t.Errorf("user %s: entry %+v detail %s, vendor %+v", u.ID, e, e.Detail, u.Roles)
		}
	}
}

// TestUsersNeverCarryStaffContactDetails: no part of a user entry holds the user's email or
// phone, whatever the vendor sends.
func TestUsersNeverCarryStaffContactDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 2, ContactsPerLocation: 1}, withDictScopes)
	for _, acct := range b.accounts(t) {
		users := b.srv.Users(acct.ID)
		got := b.dictionary(t, acct)
		for _, e := range got {
			if e.Kind != sources.DictUser {
				continue
			}
			text := strings.Join([]string{e.ID, e.Name, e.ParentID, e.DataType, e.Category, string(e.Detail)}, "|")
			for _, u := range users {
				if strings.Contains(text, u.Email) || strings.Contains(text, u.Phone) || strings.Contains(text, "@") {
					t.Fatalf("user entry %s carries contact details", e.ID)
				}
			}
		}
		if len(users) == 0 || len(got) == 0 {
			t.Fatal("no users")
		}
	}
}

// TestDictionaryWithoutItsScope: a grant without a dictionary's scope gets the vendor's 401
// for that stream, a *sources.MissingScopeError naming the scope; the contacts still read.
func TestDictionaryWithoutItsScope(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 5}, func(c *Config) {
		c.Scopes = []string{"contacts.readonly", "oauth.readonly", "oauth.write"}
	})
	acct := b.accounts(t)[0]
	for stream, scope := range map[string]string{StreamCustomFields: ScopeCustomFields, StreamUsers: ScopeUsers} {
		_, err := b.readAll(t, acct, stream)
		var ms *sources.MissingScopeError
		if !errors.As(err, &ms) || ms.Scope != scope || ms.Stream != stream || ms.AccountID != acct.ID ||
			ms.Vendor != sources.LeadConnector || ms.Message != lctest.MsgScope {
			t.Fatalf("stream %s: want a *sources.MissingScopeError for %s, got %v", stream, scope, err)
		}
	}
	if _, err := b.pass(t, acct, "", sources.ReadOptions{}, 0); err != nil {
		t.Fatalf("contacts must still sync: %v", err)
	}
	if r, m := b.tokens.refreshes.Load(), b.tokens.mints.Load(); r != 0 || m != 1 {
		t.Fatalf("a scope error must not refresh or re-mint: refreshes %d mints %d", r, m)
	}
}

// TestBadDictionaryEntriesAreQuarantined: an entry without an id, one of the wrong shape
// and one that is not an object are quarantined, the rest arrive (an entry listed twice
// once); a quarantined user keeps its contact details at the vendor. A 403 restricts the
// stream.
func TestBadDictionaryEntriesAreQuarantined(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/location-token", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"accessToken":"lc_at_loc","expiresIn":86399,"locationId":"L"}`))
	})
	mux.HandleFunc("GET /locations/L/customFields", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("model") != "all" || r.Header.Get("Version") == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"customFields":[` +
			`{"id":"a","name":"Budget","fieldKey":"contact.budget","dataType":"MONETORY","position":"2.0","model":"contact"},` +
			`{"name":"No id","dataType":"TEXT"},` +
			`{"id":"c","name":{"en":"x"}},` +
			`"d",` +
			`{"id":"e","picklistOptions":[{"label":"Yes","key":"yes"}],"dataType":"RADIO","picklistImageOptions":[]},` +
			`{"id":"f","picklistOptions":[]}]}`))
	})
	mux.HandleFunc("GET /users/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("locationId") != "L" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"users":[` +
			`{"id":"u1","firstName":"Ann","lastName":"Lee","email":"ann@agency.example","phone":"+15551230000","roles":"admin"},` +
			`{"id":null,"name":"Bo Kim","email":"bo@agency.example","Phone":"+15551239999","roles":{"role":"user"}},` +
			`{"id":"u3","name":"Cy","deleted":true},` +
			`{"id":"u4","name":"Di","roles":{"type":"account","role":"User","locationIds":["L"]}},` +
			`{"id":"u4","name":"Di again"}]}`))
	})
	mux.HandleFunc("GET /locations/E/customFields", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"fields":[]}`))
	})
	mux.HandleFunc("GET /locations/F/customFields", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"statusCode":403,"message":"The token does not have access to this location.","error":"Forbidden"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tokens := &memTokens{now: time.Now, accounts: map[string]*memAccount{},
		grant: &oauth2.Token{AccessToken: "lc_at_company", Expiry: time.Now().Add(time.Hour)}}
	src, err := New(Config{BaseURL: srv.URL, AppID: "app", CompanyID: "C"}, tokens)
	if err != nil {
		t.Fatal(err)
	}
	read := func(acct, stream string) (sources.Page, error) {
		var pages []sources.Page
		for p, err := range src.Read(context.Background(), sources.Account{ID: acct}, stream, "", sources.ReadOptions{}) {
			if err != nil {
				return sources.Page{}, err
			}
			pages = append(pages, p)
		}
		if len(pages) != 1 {
			t.Fatalf("%s: %d pages", stream, len(pages))
		}
		return pages[0], nil
	}

	fields, err := read("L", StreamCustomFields)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range fields.Dictionary {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"a", "e", "f"}) || len(fields.Rejected) != 3 {
		t.Fatalf("entries %v, %d rejected", ids, len(fields.Rejected))
	}
	a, e, f := fields.Dictionary[0], fields.Dictionary[1], fields.Dictionary[2]
	if a.Position != 2 || a.DataType != "MONETORY" || a.Category != "contact" || string(a.Detail) != `{"fieldKey":"contact.budget"}` {
		t.Errorf("entry a: %+v %s", a, a.Detail)
	}
	if string(e.Detail) != `{"picklistOptions":[{"label":"Yes","key":"yes"}]}` || f.Detail != nil {
		t.Errorf("details: e %s, f %s", e.Detail, f.Detail)
	}
	for i, want := range []struct{ id, reason string }{{"", "no id"}, {"c", "want a string"}, {"", "not a JSON object"}} {
		r := fields.Rejected[i]
		if r.ID != want.id || !strings.Contains(r.Reason, want.reason) || len(r.Raw) == 0 {
			t.Errorf("rejected %d: %v, want %q %q", i, r, want.id, want.reason)
		}
	}

	users, err := read("L", StreamUsers)
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Dictionary) != 2 || len(users.Rejected) != 1 {
		t.Fatalf("users %+v, %d rejected", users.Dictionary, len(users.Rejected))
	}
	if u := users.Dictionary[0]; u.ID != "u1" || u.Name != "Ann Lee" || u.Category != "" || u.Detail != nil {
		t.Errorf("user u1 (roles not an object): %+v", u)
	}
	if u := users.Dictionary[1]; u.ID != "u4" || u.Name != "Di" || u.Category != "user" || string(u.Detail) != `{"roleType":"account"}` {
		t.Errorf("user u4: %+v %s", u, u.Detail)
	}
	rej := users.Rejected[0]
	if rej.Reason != "no id" || !strings.Contains(string(rej.Raw), "Bo Kim") ||
		strings.Contains(string(rej.Raw), "bo@agency.example") || strings.Contains(string(rej.Raw), "5551239999") {
		t.Errorf("quarantined user %v: its name must stay and its email and phone must go", rej)
	}

	// An answer without the list is an error, not an empty dictionary (which would delete
	// every entry).
	_, err = read("E", StreamCustomFields)
	cause := false
	for e := err; e != nil; e = errors.Unwrap(e) {
		cause = cause || strings.Contains(e.Error(), "the answer has no customFields")
	}
	if !cause {
		t.Fatalf("an answer without customFields: %v", err)
	}

	_, err = read("F", StreamCustomFields)
	var re *sources.RestrictedError
	if !errors.As(err, &re) || re.Stream != StreamCustomFields || re.AccountID != "F" || re.Message != lctest.MsgNoLocation {
		t.Fatalf("a 403: want the stream restricted, got %v", err)
	}
}
