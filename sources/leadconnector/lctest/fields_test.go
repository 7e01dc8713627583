package lctest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/simkit"
)

// dictScopes is a grant that may read both dictionaries.
const dictScopes = "oauth.readonly oauth.write locations/customFields.readonly users.readonly"

// dictToken mints a location token for loc from a fresh grant with scopes.
func (b *testBundle) dictToken(t *testing.T, scopes, loc string) string {
	t.Helper()
	_, g := b.srv.tokens.NewGrant("x", b.srv.companyMeta(scopes))
	return b.locationToken(t, g.Access, loc)
}

type fieldsPage struct {
	CustomFields []map[string]any `json:"customFields"`
}

type usersPage struct {
	Users []User `json:"users"`
}

func decodeInto(t *testing.T, r resp, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body: %v: %s", err, r.body)
	}
}

// TestCustomFieldsAsDocumented checks GET /locations/{id}/customFields against the shapes
// of vendor-docs/leadconnector/locations.json (CustomFieldSchema) and custom-fields.json
// (the dataType enum, which types carry picklistOptions).
func TestCustomFieldsAsDocumented(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 40})
	loc := b.srv.LocationIDs()[0]
	tok := b.dictToken(t, dictScopes, loc)
	var all fieldsPage
	decodeInto(t, b.do(t, "GET", "/locations/"+loc+"/customFields?model=all", V2021, tok, "", ""), &all)
	models := map[string]int{}
	ids := map[string]bool{}
	for _, cf := range all.CustomFields {
		id, _ := cf["id"].(string)
		model, _ := cf["model"].(string)
		dt, _ := cf["dataType"].(string)
		key, _ := cf["fieldKey"].(string)
		_, hasOpts := cf["picklistOptions"]
		_, isNum := cf["position"].(float64)
		if id == "" || cf["name"] == "" || !strings.HasPrefix(key, model+".") || !slices.Contains(DataTypes, dt) ||
			cf["locationId"] != loc || !isNum || hasOpts != HasOptions(dt) {
			t.Errorf("custom field not as documented: %v", cf)
		}
		models[model]++
		ids[id] = true
	}
	if models[ModelContact] != 6 || models[ModelOpportunity] != 3 || len(models) != 2 {
		t.Fatalf("models %v: want 6 contact and 3 opportunity fields", models)
	}
	// Every custom value a contact carries names a field of the location.
	for _, cid := range customFieldIDs {
		if !ids[cid] {
			t.Errorf("contacts carry values for field %s, which the location does not define", cid)
		}
	}
	// The model filter; no model lists the contact fields; a bad one is a 422.
	for q, want := range map[string]int{"?model=contact": 6, "?model=opportunity": 3, "": 6} {
		var p fieldsPage
		decodeInto(t, b.do(t, "GET", "/locations/"+loc+"/customFields"+q, V3, tok, "", ""), &p)
		if len(p.CustomFields) != want {
			t.Errorf("customFields%s: %d fields, want %d", q, len(p.CustomFields), want)
		}
	}
	if r := b.do(t, "GET", "/locations/"+loc+"/customFields?model=deal", V3, tok, "", ""); r.status != 422 {
		t.Errorf("model=deal: %d %s", r.status, r.body)
	}
	if got := b.srv.CustomFieldIDs(loc, ModelOpportunity); len(got) != 3 || !ids[got[0]] {
		t.Errorf("CustomFieldIDs(opportunity) = %v", got)
	}
}

// TestUsersAsDocumented checks GET /users/?locationId against users.json (UserSchema,
// RoleSchema).
func TestUsersAsDocumented(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 40})
	for _, loc := range b.srv.LocationIDs() {
		var p usersPage
		decodeInto(t, b.do(t, "GET", "/users/?locationId="+loc, V2021, b.dictToken(t, dictScopes, loc), "", ""), &p)
		if n := len(p.Users); n < 3 || n > 5 {
			t.Fatalf("location %s: %d users, want 3 to 5", loc, n)
		}
		for _, u := range p.Users {
			if u.ID == "" || u.Name != u.FirstName+" "+u.LastName || !strings.Contains(u.Email, "@") || u.Phone == "" ||
				(u.Roles.Role != "admin" && u.Roles.Role != "user") || !slices.Contains(u.Roles.LocationIDs, loc) {
				t.Errorf("user not as documented: %+v", u)
			}
		}
		// Contacts are assigned to the agency admin: the listing names them.
		if !slices.ContainsFunc(p.Users, func(u User) bool { return u.ID == b.srv.userID && u.Roles.Type == "agency" }) {
			t.Errorf("location %s: the agency user contacts are assigned to is not listed", loc)
		}
		if got := b.srv.UserIDs(loc); len(got) != len(p.Users) {
			t.Errorf("UserIDs = %v", got)
		}
	}
	tok := b.dictToken(t, dictScopes, b.srv.LocationIDs()[0])
	if r := b.do(t, "GET", "/users/", V3, tok, "", ""); r.status != 422 {
		t.Errorf("no locationId: %d %s", r.status, r.body)
	}
}

func TestDictionariesNeedTheirScopesAndTheirLocation(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 3, ForbiddenLocations: 1, ContactsPerLocation: 5})
	locs := b.srv.LocationIDs()
	paths := func(loc string) []string {
		return []string{"/locations/" + loc + "/customFields?model=all", "/users/?locationId=" + loc}
	}
	// A grant with neither dictionary's scope.
	narrow := b.dictToken(t, "contacts.readonly oauth.readonly oauth.write", locs[0])
	for _, p := range paths(locs[0]) {
		if r := b.do(t, "GET", p, V3, narrow, "", ""); r.status != 401 || r.json(t)["message"] != MsgScope {
			t.Errorf("%s without its scope: %d", p, r.status)
		}
	}
	// Another location's token: 403, like contact search.
	for _, p := range paths(locs[1]) {
		if r := b.do(t, "GET", p, V3, b.dictToken(t, dictScopes, locs[0]), "", ""); r.status != 403 || r.json(t)["message"] != MsgNoLocation {
			t.Errorf("%s with another location's token: %d %s", p, r.status, r.body)
		}
	}
	// A Forbidden location withholds its contacts, not its dictionaries.
	for _, p := range paths(locs[2]) {
		if r := b.do(t, "GET", p, V3, b.dictToken(t, dictScopes, locs[2]), "", ""); r.status != 200 {
			t.Errorf("%s of the forbidden location: %d %s", p, r.status, r.body)
		}
	}
	for i, at := range b.srv.GroundTruth() {
		n := 0
		for _, rt := range at.Records {
			if rt.Table == "crm_dictionary" && (strings.HasPrefix(rt.ID, "custom_field:") || strings.HasPrefix(rt.ID, "user:")) {
				n++
			}
		}
		if want := len(b.srv.CustomFieldIDs(locs[i], "")) + len(b.srv.UserIDs(locs[i])); n != want || n == 0 {
			t.Errorf("account %d: %d dictionary rows in the truth, want %d", i, n, want)
		}
	}
}

func TestDictionaryAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 1, ContactsPerLocation: 5})
	loc := b.srv.LocationIDs()[0]
	admin := func(method, path, body string) resp {
		return b.do(t, method, "/_admin/locations/"+loc+path, "", "", "application/json", body)
	}
	r := admin("POST", "/custom-fields", `{"model":"opportunity","name":"Lead score","dataType":"NUMERICAL"}`)
	if r.status != 201 {
		t.Fatalf("add field: %d %s", r.status, r.body)
	}
	added := r.json(t)["id"].(string)
	cf := b.srv.CustomFields(loc, ModelOpportunity)
	if last := cf[len(cf)-1]; last.ID != added || last.FieldKey != "opportunity.lead_score" || last.Position != 3 {
		t.Fatalf("added field %+v", last)
	}
	if r := admin("PATCH", "/custom-fields/"+added, `{"name":"Lead grade"}`); r.status != 204 {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	if got := b.srv.CustomFields(loc, ModelOpportunity); got[len(got)-1].Name != "Lead grade" || got[len(got)-1].FieldKey != "opportunity.lead_score" {
		t.Fatalf("renamed field %+v", got[len(got)-1])
	}
	victim := customFieldIDs[1]
	if r := admin("DELETE", "/custom-fields/"+victim, ""); r.status != 204 {
		t.Fatalf("delete field: %d %s", r.status, r.body)
	}
	r = admin("POST", "/users", `{"role":"admin"}`)
	if r.status != 201 {
		t.Fatalf("add user: %d %s", r.status, r.body)
	}
	user := r.json(t)["id"].(string)
	gone := b.srv.UserIDs(loc)[0]
	if r := admin("DELETE", "/users/"+gone, ""); r.status != 204 {
		t.Fatalf("delete user: %d %s", r.status, r.body)
	}
	// The listing and the truth follow.
	var p fieldsPage
	decodeInto(t, b.do(t, "GET", "/locations/"+loc+"/customFields?model=all", V3, b.dictToken(t, dictScopes, loc), "", ""), &p)
	var listed []string
	for _, cf := range p.CustomFields {
		listed = append(listed, cf["id"].(string))
	}
	if !slices.Contains(listed, added) || slices.Contains(listed, victim) || len(listed) != 9 {
		t.Fatalf("listing after the changes: %v", listed)
	}
	var truth []string
	for _, rt := range b.srv.GroundTruth()[0].Records {
		truth = append(truth, rt.ID)
	}
	if !slices.Contains(truth, "custom_field:"+added) || slices.Contains(truth, "custom_field:"+victim) ||
		!slices.Contains(truth, "user:"+user) || slices.Contains(truth, "user:"+gone) {
		t.Fatalf("truth after the changes: %v", truth)
	}
	// Refusals.
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/custom-fields", `{"name":"x","dataType":"COLOR"}`, 400},
		{"POST", "/custom-fields", `{"name":"x","dataType":"TEXT","picklistOptions":["a"]}`, 400},
		{"POST", "/custom-fields", `{"name":"","dataType":"TEXT"}`, 400},
		{"POST", "/custom-fields", `{"name":"x","model":"deal"}`, 400},
		{"PATCH", "/custom-fields/" + victim, `{"name":"x"}`, 404},
		{"DELETE", "/users/" + gone, "", 404},
		{"POST", "/users", `{"role":"owner"}`, 400},
	} {
		if r := admin(c.method, c.path, c.body); r.status != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.status, r.body, c.want)
		}
	}
	if r := b.do(t, "POST", "/_admin/locations/nope/users", "", "", "", ""); r.status != 404 {
		t.Errorf("unknown location: %d", r.status)
	}
}

func TestDictionariesAreDeterministicPerLocation(t *testing.T) {
	t.Parallel()
	opts := func(contacts int) Options {
		return Options{Seed: 9, Clock: simkit.NewManualClock(t0), ContactsPerLocation: contacts}
	}
	a, c := New(opts(5)), New(opts(30))
	for _, loc := range a.LocationIDs() {
		if !slices.Equal(a.CustomFieldIDs(loc, ""), c.CustomFieldIDs(loc, "")) || !slices.Equal(a.UserIDs(loc), c.UserIDs(loc)) {
			t.Fatalf("location %s: dictionaries depend on the number of contacts", loc)
		}
	}
	locs := a.LocationIDs()
	if !slices.Equal(a.CustomFieldIDs(locs[0], ModelOpportunity), a.CustomFieldIDs(locs[1], ModelOpportunity)) {
		t.Fatal("the opportunity fields (those opportunities carry values for) differ by location")
	}
}
