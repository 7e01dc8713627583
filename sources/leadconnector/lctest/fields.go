package lctest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/leadsync/leadsync/internal/simkit"
)

// A location's custom-field definitions and users: the dictionaries that give names to the
// ids on contacts (customFields[].id, assignedTo) and opportunities. Both are PII-free for
// leads (a user is staff), so a Forbidden location serves them like any other.
//
//	GET /locations/{locationId}/customFields?model=contact|opportunity|all
//	    scope locations/customFields.readonly → {"customFields":[CustomField…]}
//	    (vendor-docs/leadconnector/locations.json, get-custom-fields)
//	GET /users/?locationId=…
//	    scope users.readonly → {"users":[User…]}
//	    (vendor-docs/leadconnector/users.json, get-user-by-location)
//
// Admin (JSON, under /_admin/):
//
//	POST   /locations/{loc}/custom-fields        NewCustomField → 201 {"id":…}
//	PATCH  /locations/{loc}/custom-fields/{id}   {"name":…} → 204 (the fieldKey stays)
//	DELETE /locations/{loc}/custom-fields/{id}   → 204
//	POST   /locations/{loc}/users                {"role":"admin"|"user"} (optional) → 201 {"id":…}
//	DELETE /locations/{loc}/users/{id}           → 204

// Custom-field models (CustomField.Model), and the model query's "all".
const (
	ModelContact     = "contact"
	ModelOpportunity = "opportunity"
	modelAll         = "all"
)

// DataTypes are the custom-field types the vendor documents (custom-fields.json, the
// dataType enum of its create DTO; MONETORY is the vendor's spelling).
var DataTypes = []string{"TEXT", "LARGE_TEXT", "NUMERICAL", "PHONE", "MONETORY", "CHECKBOX",
	"SINGLE_OPTIONS", "MULTIPLE_OPTIONS", "DATE", "TEXTBOX_LIST", "FILE_UPLOAD", "RADIO"}

// optionTypes are the types that carry picklistOptions (custom-fields.json: "valid only for
// SINGLE_OPTIONS, MULTIPLE_OPTIONS, RADIO, CHECKBOX, TEXTBOX_LIST type").
var optionTypes = []string{"SINGLE_OPTIONS", "MULTIPLE_OPTIONS", "RADIO", "CHECKBOX", "TEXTBOX_LIST"}

// HasOptions reports whether a custom field of dataType carries picklistOptions.
func HasOptions(dataType string) bool { return slices.Contains(optionTypes, dataType) }

// CustomField is a custom-field definition as the vendor lists it (locations.json,
// CustomFieldSchema). Its slices are never changed in place once stored.
type CustomField struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	FieldKey        string   `json:"fieldKey"`
	Placeholder     string   `json:"placeholder"`
	DataType        string   `json:"dataType"`
	Position        int      `json:"position"`
	PicklistOptions []string `json:"picklistOptions,omitempty"`
	// IsMultiFileAllowed and MaxFileLimit are a FILE_UPLOAD field's.
	IsMultiFileAllowed *bool  `json:"isMultiFileAllowed,omitempty"`
	MaxFileLimit       *int   `json:"maxFileLimit,omitempty"`
	LocationID         string `json:"locationId"`
	Model              string `json:"model"`
}

// User is a user as GET /users/ lists it (users.json, UserSchema). Email and Phone are
// staff PII.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	FirstName string    `json:"firstName"`
	LastName  string    `json:"lastName"`
	Email     string    `json:"email"`
	Phone     string    `json:"phone"`
	Extension string    `json:"extension"`
	Roles     UserRoles `json:"roles"`
	Deleted   bool      `json:"deleted"`
}

// UserRoles is a user's RoleSchema: Type "agency" or "account", Role "admin" or "user".
type UserRoles struct {
	Type               string   `json:"type"`
	Role               string   `json:"role"`
	LocationIDs        []string `json:"locationIds"`
	RestrictSubAccount bool     `json:"restrictSubAccount"`
}

// fieldData is a location's custom-field definitions (in listing order: by model, then
// position) and its users.
type fieldData struct {
	fields []CustomField
	users  []User
}

// fieldSpec is a custom field the seed may give a location.
type fieldSpec struct {
	name, dataType string
	options        []string
}

// The contact fields every sandbox location has, with the ids contacts carry values for
// (data.go, customFieldIDs): a value per field of the matching type.
var fixedContactFields = []fieldSpec{
	{"How did you hear about us?", "SINGLE_OPTIONS", []string{"Website", "Referral", "Walk-in", "Phone"}},
	{"Budget", "MONETORY", nil},
	{"Services of interest", "MULTIPLE_OPTIONS", []string{"Option A", "Option B", "Option C"}},
}

// The opportunity fields every sandbox location has, matching the values opportunities carry
// (opportunities.go, oppCustomFieldIDs).
var fixedOpportunityFields = []fieldSpec{
	{"Property type", "SINGLE_OPTIONS", []string{"Residential", "Commercial"}},
	{"Contract length (months)", "NUMERICAL", nil},
	{"Add-ons", "MULTIPLE_OPTIONS", []string{"Financing", "Warranty"}},
}

// Further fields a location draws from.
var (
	extraContactFields = []fieldSpec{
		{"Move-in date", "DATE", nil},
		{"Preferred contact time", "SINGLE_OPTIONS", []string{"Morning", "Afternoon", "Evening"}},
		{"Notes from first call", "LARGE_TEXT", nil},
		{"Household size", "NUMERICAL", nil},
		{"Opt in to text messages", "CHECKBOX", []string{"Yes"}},
		{"Insurance provider", "TEXT", nil},
		{"Preferred language", "RADIO", []string{"English", "Spanish", "Other"}},
		{"Secondary phone", "PHONE", nil},
	}
	opportunityFields = []fieldSpec{
		{"Deal type", "SINGLE_OPTIONS", []string{"New business", "Renewal", "Upsell"}},
		{"Expected close date", "DATE", nil},
		{"Competitor", "TEXT", nil},
		{"Contract length (months)", "NUMERICAL", nil},
		{"Deposit amount", "MONETORY", nil},
		{"Signed contract", "FILE_UPLOAD", nil},
		{"Financing options", "MULTIPLE_OPTIONS", []string{"Cash", "Loan", "Lease"}},
	}
)

// seedFields draws location l's (the i-th) custom fields and users from their own random
// stream: 6 contact fields (the 3 contacts carry values for, and 3 more), 3 opportunity
// fields, and 3 to 5 users (the agency admin contacts are assigned to, and 2 to 4 of the
// location's own).
func (f *Fake) seedFields(i int, l *location, _, _ time.Time) {
	r := simkit.RandFor(f.opts.Seed, fmt.Sprintf("lc/location/%d/fields", i))
	fd := &l.life.fields
	for k, s := range fixedContactFields {
		fd.add(newCustomField(customFieldIDs[k], l.ID, ModelContact, s))
	}
	for _, k := range r.Perm(len(extraContactFields))[:3] {
		fd.add(newCustomField(newID(r), l.ID, ModelContact, extraContactFields[k]))
	}
	// The opportunity fields are the ones opportunities carry values for (opportunities.go,
	// oppCustomFieldIDs); the draw is kept so the users below stay as they were.
	_ = r.Perm(len(opportunityFields))
	for k, s := range fixedOpportunityFields {
		fd.add(newCustomField(oppCustomFieldIDs[k], l.ID, ModelOpportunity, s))
	}
	// The agency admin is the same user in every location (drawn from the same stream).
	admin := newUser(simkit.RandFor(f.opts.Seed, "lc/company/user"), f.userID, l.ID, "agency", "admin")
	admin.Email = f.opts.SandboxUser
	fd.users = append(fd.users, admin)
	for k := range 2 + r.IntN(3) {
		role := "user"
		if k == 0 {
			role = "admin"
		}
		fd.users = append(fd.users, newUser(r, newID(r), l.ID, "account", role))
	}
}

func newCustomField(id, locID, model string, s fieldSpec) CustomField {
	cf := CustomField{ID: id, Name: s.name, Placeholder: s.name, DataType: s.dataType, LocationID: locID, Model: model}
	if HasOptions(s.dataType) {
		cf.PicklistOptions = slices.Clone(s.options)
	}
	if s.dataType == "FILE_UPLOAD" {
		multi, limit := true, 4
		cf.IsMultiFileAllowed, cf.MaxFileLimit = &multi, &limit
	}
	return cf
}

func newUser(r *rand.Rand, id, locID, typ, role string) User {
	p := simkit.NewPerson(r)
	return User{ID: id, Name: p.FirstName + " " + p.LastName, FirstName: p.FirstName, LastName: p.LastName,
		Email: p.Email, Phone: p.Phone, Roles: UserRoles{Type: typ, Role: role, LocationIDs: []string{locID}}}
}

// add stores a new field last among its model's, with the next position and a fieldKey
// made from its name ("<model>.<name in snake case>", unique in the location).
func (fd *fieldData) add(cf CustomField) {
	pos, at := 0, len(fd.fields)
	for i, o := range fd.fields {
		if o.Model == cf.Model {
			pos, at = max(pos, o.Position+1), i+1
		}
	}
	cf.Position = pos
	base := cf.Model + "." + snakeKey(cf.Name)
	cf.FieldKey = base
	for n := 2; slices.ContainsFunc(fd.fields, func(o CustomField) bool { return o.FieldKey == cf.FieldKey }); n++ {
		cf.FieldKey = fmt.Sprintf("%s_%d", base, n)
	}
	fd.fields = slices.Insert(fd.fields, at, cf)
}

// snakeKey is a name as a fieldKey suffix: lower case letters and digits, words joined by _.
func snakeKey(name string) string {
	var b strings.Builder
	sep := false
	for _, c := range strings.ToLower(name) {
		switch {
		case unicode.IsLetter(c) || unicode.IsDigit(c):
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(c)
			sep = false
		case c == ' ' || c == '_':
			sep = true
		}
	}
	return cmp.Or(b.String(), "field")
}

func (fd *fieldData) fieldIndex(id string) int {
	return slices.IndexFunc(fd.fields, func(cf CustomField) bool { return cf.ID == id })
}

func (fd *fieldData) userIndex(id string) int {
	return slices.IndexFunc(fd.users, func(u User) bool { return u.ID == id })
}

func (f *Fake) fieldEndpoints() []endpoint {
	return []endpoint{
		{method: "GET", path: "/locations/{locationId}/customFields", class: "Location",
			scope: "locations/customFields.readonly", h: f.handleCustomFields},
		{method: "GET", path: "/users/{$}", class: "Location", scope: "users.readonly", h: f.handleUsers},
	}
}

// handleCustomFields is GET /locations/{locationId}/customFields. The document does not say
// what an absent model lists; the fake lists the contact fields, so a client must ask for
// model=all to see the opportunity ones.
func (f *Fake) handleCustomFields(w http.ResponseWriter, r *http.Request, c *call) {
	model := cmp.Or(r.URL.Query().Get("model"), ModelContact)
	if model != ModelContact && model != ModelOpportunity && model != modelAll {
		write422(w, c.q, "model must be one of the following values: contact, opportunity, all")
		return
	}
	locID := r.PathValue("locationId")
	f.mu.Lock()
	l := f.byID[locID]
	if l == nil || c.location != locID {
		f.mu.Unlock()
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	out := []CustomField{}
	for _, cf := range l.life.fields.fields {
		if model == modelAll || cf.Model == model {
			out = append(out, cf)
		}
	}
	f.mu.Unlock()
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"customFields": out})
}

// handleUsers is GET /users/?locationId=…: the location's users, in one answer (the
// document pages only GET /users/search).
func (f *Fake) handleUsers(w http.ResponseWriter, r *http.Request, c *call) {
	locID := r.URL.Query().Get("locationId")
	if locID == "" {
		write422(w, c.q, "locationId should not be empty", "locationId must be a string")
		return
	}
	f.mu.Lock()
	l := f.byID[locID]
	if l == nil || c.location != locID {
		f.mu.Unlock()
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	out := slices.Clone(l.life.fields.users)
	f.mu.Unlock()
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"users": out})
}

// NewCustomField is what AddCustomField creates (the vendor's create DTO, in part).
type NewCustomField struct {
	Model    string `json:"model"`    // ModelContact (default) or ModelOpportunity
	Name     string `json:"name"`     // required
	DataType string `json:"dataType"` // one of DataTypes; default TEXT
	// Options are the picklistOptions of an option type (HasOptions).
	Options []string `json:"picklistOptions"`
}

// AddCustomField creates a custom field in a location now and returns its id.
func (f *Fake) AddCustomField(locID string, n NewCustomField) (string, error) {
	n.Model = cmp.Or(n.Model, ModelContact)
	n.DataType = cmp.Or(n.DataType, "TEXT")
	switch {
	case n.Model != ModelContact && n.Model != ModelOpportunity:
		return "", fmt.Errorf("lctest: model %q: want contact or opportunity", n.Model)
	case strings.TrimSpace(n.Name) == "":
		return "", fmt.Errorf("lctest: a custom field needs a name")
	case !slices.Contains(DataTypes, n.DataType):
		return "", fmt.Errorf("lctest: dataType %q is not one the vendor documents", n.DataType)
	case len(n.Options) > 0 && !HasOptions(n.DataType):
		return "", fmt.Errorf("lctest: a %s field has no picklistOptions", n.DataType)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return "", fmt.Errorf("lctest: unknown location %q", locID)
	}
	cf := newCustomField(newID(f.rng), locID, n.Model, fieldSpec{n.Name, n.DataType, n.Options})
	l.life.fields.add(cf)
	return cf.ID, nil
}

// RenameCustomField renames a custom field; its fieldKey stays what it was.
func (f *Fake) RenameCustomField(locID, id, name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("lctest: a custom field needs a name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, i, err := f.fieldLocked(locID, id)
	if err != nil {
		return err
	}
	fd.fields[i].Name = name
	return nil
}

// DeleteCustomField deletes a custom field: it vanishes from the listing (contacts keep the
// values they carry for it).
func (f *Fake) DeleteCustomField(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, i, err := f.fieldLocked(locID, id)
	if err != nil {
		return err
	}
	fd.fields = slices.Delete(fd.fields, i, i+1)
	return nil
}

func (f *Fake) fieldLocked(locID, id string) (*fieldData, int, error) {
	l, ok := f.byID[locID]
	if !ok {
		return nil, 0, fmt.Errorf("lctest: unknown location %q", locID)
	}
	fd := &l.life.fields
	i := fd.fieldIndex(id)
	if i < 0 {
		return nil, 0, fmt.Errorf("lctest: unknown custom field %q in location %q", id, locID)
	}
	return fd, i, nil
}

// AddUser adds a user of the location ("account" type) with role "admin" or "user" (""
// means "user") and returns its id.
func (f *Fake) AddUser(locID, role string) (string, error) {
	role = cmp.Or(role, "user")
	if role != "admin" && role != "user" {
		return "", fmt.Errorf("lctest: role %q: want admin or user", role)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return "", fmt.Errorf("lctest: unknown location %q", locID)
	}
	u := newUser(f.rng, newID(f.rng), locID, "account", role)
	l.life.fields.users = append(l.life.fields.users, u)
	return u.ID, nil
}

// DeleteUser removes a user from the location: it vanishes from the listing.
func (f *Fake) DeleteUser(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return fmt.Errorf("lctest: unknown location %q", locID)
	}
	fd := &l.life.fields
	i := fd.userIndex(id)
	if i < 0 {
		return fmt.Errorf("lctest: unknown user %q in location %q", id, locID)
	}
	fd.users = slices.Delete(fd.users, i, i+1)
	return nil
}

// CustomFields lists a location's custom fields of model ("" or "all": every model) in
// listing order.
func (f *Fake) CustomFields(locID, model string) []CustomField {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	var out []CustomField
	for _, cf := range l.life.fields.fields {
		if model == "" || model == modelAll || cf.Model == model {
			out = append(out, cf)
		}
	}
	return out
}

// CustomFieldIDs lists the ids of a location's custom fields of model ("" or "all": every
// model), in listing order.
func (f *Fake) CustomFieldIDs(locID, model string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	return fieldIDsLocked(l, model)
}

// fieldIDsLocked is CustomFieldIDs for a caller holding f.mu (or seeding).
func fieldIDsLocked(l *location, model string) []string {
	var out []string
	for _, cf := range l.life.fields.fields {
		if model == "" || model == modelAll || cf.Model == model {
			out = append(out, cf.ID)
		}
	}
	return out
}

// Users lists a location's users.
func (f *Fake) Users(locID string) []User {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	return slices.Clone(l.life.fields.users)
}

// UserIDs lists the ids of a location's users.
func (f *Fake) UserIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	return userIDsLocked(l)
}

// userIDsLocked is UserIDs for a caller holding f.mu (or seeding).
func userIDsLocked(l *location) []string {
	out := make([]string, len(l.life.fields.users))
	for i, u := range l.life.fields.users {
		out[i] = u.ID
	}
	return out
}

// adminFields serves the dictionaries' /_admin/ routes (see the top of this file).
func (f *Fake) adminFields(mux *http.ServeMux) {
	mux.HandleFunc("POST /locations/{loc}/custom-fields", func(w http.ResponseWriter, r *http.Request) {
		var n NewCustomField
		if err := simkit.DecodeStrict(r, &n); err != nil {
			adminError(w, err.Error())
			return
		}
		if !f.locationKnown(r.PathValue("loc")) {
			adminNotFound(w, fmt.Errorf("lctest: unknown location %q", r.PathValue("loc")))
			return
		}
		id, err := f.AddCustomField(r.PathValue("loc"), n)
		if err != nil {
			adminError(w, err.Error())
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("PATCH /locations/{loc}/custom-fields/{id}", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Name string `json:"name"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || strings.TrimSpace(b.Name) == "" {
			adminError(w, "want {\"name\":\"...\"}")
			return
		}
		if err := f.RenameCustomField(r.PathValue("loc"), r.PathValue("id"), b.Name); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /locations/{loc}/custom-fields/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.DeleteCustomField(r.PathValue("loc"), r.PathValue("id")); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /locations/{loc}/users", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Role string `json:"role"`
		}
		if r.ContentLength != 0 {
			if err := simkit.DecodeStrict(r, &b); err != nil {
				adminError(w, err.Error())
				return
			}
		}
		if !f.locationKnown(r.PathValue("loc")) {
			adminNotFound(w, fmt.Errorf("lctest: unknown location %q", r.PathValue("loc")))
			return
		}
		id, err := f.AddUser(r.PathValue("loc"), b.Role)
		if err != nil {
			adminError(w, err.Error())
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("DELETE /locations/{loc}/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.DeleteUser(r.PathValue("loc"), r.PathValue("id")); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (f *Fake) locationKnown(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.byID[id]
	return ok
}

// fieldTruth is location l's crm_dictionary rows of custom fields and users (f.mu held):
// every location's, a Forbidden one's included (the dictionaries hold no lead PII).
func (f *Fake) fieldTruth(l *location) []simkit.RecordTruth {
	fd := &l.life.fields
	out := make([]simkit.RecordTruth, 0, len(fd.fields)+len(fd.users))
	for _, cf := range fd.fields {
		out = append(out, simkit.RecordTruth{Table: "crm_dictionary", ID: "custom_field:" + cf.ID})
	}
	for _, u := range fd.users {
		out = append(out, simkit.RecordTruth{Table: "crm_dictionary", ID: "user:" + u.ID})
	}
	return out
}
