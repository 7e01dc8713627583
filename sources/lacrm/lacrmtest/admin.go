package lacrmtest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
)

func (f *Fake) routes() http.Handler {
	vendor := http.NewServeMux()
	vendor.HandleFunc("POST /oauth/token.php", f.token)
	vendor.HandleFunc("/v2/", f.api)
	vendor.HandleFunc("/v2", f.api)
	faulted := f.faults.Middleware(vendor, f.counters, func(w http.ResponseWriter) { write429(w, 1) })

	root := http.NewServeMux()
	root.Handle("/_admin/", f.admin())
	// The browser page is counted but never faulted.
	root.Handle("GET /oauth/authorize.php", simkit.CountRequests(http.HandlerFunc(f.authorize), f.counters, endpointName))
	root.Handle("/", withFnSlot(simkit.CountRequests(faulted, f.counters, endpointName)))
	return root
}

func (f *Fake) admin() http.Handler {
	m := http.NewServeMux()
	m.Handle("/_admin/counters", simkit.AdminCounters(f.counters))
	m.Handle("/_admin/faults", simkit.AdminFaults(f.faults))
	m.HandleFunc("GET /_admin/truth", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.GroundTruth())
	})
	m.HandleFunc("GET /_admin/accounts", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.Users())
	})
	m.HandleFunc("PUT /_admin/ttl", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			TTL string `json:"ttl"`
		}
		d, err := decodeDuration(r, &in, &in.TTL)
		if err != nil {
			adminError(w, err)
			return
		}
		f.tokens.SetTTL(d)
		simkit.WriteJSON(w, http.StatusOK, map[string]string{"ttl": d.String()})
	})
	m.HandleFunc("PUT /_admin/ratelimit", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Limit    int    `json:"limit"`
			Interval string `json:"interval"`
		}
		d, err := decodeDuration(r, &in, &in.Interval)
		if err != nil {
			adminError(w, err)
			return
		}
		f.limiter.Set(simkit.Window{Limit: in.Limit, Interval: d})
		simkit.WriteJSON(w, http.StatusOK, map[string]any{"limit": in.Limit, "interval": d.String()})
	})
	m.HandleFunc("POST /_admin/authorize", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			User string `json:"user"`
		}
		if err := simkit.DecodeStrict(r, &in); err != nil {
			adminError(w, err)
			return
		}
		p, ok := f.newGrant(cmpOr(in.User, f.opts.SandboxUser))
		if !ok {
			adminError(w, errors.New("unknown user"))
			return
		}
		simkit.WriteJSON(w, http.StatusOK, map[string]any{"grant": p.Grant, "access_token": p.Access,
			"refresh_token": p.Refresh, "expires_in": int64(p.TTL / time.Second)})
	})
	m.HandleFunc("POST /_admin/grants/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		f.RevokeGrant(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	f.adminAPIKeys(m)
	m.HandleFunc("POST /_admin/contacts", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			AccountID string `json:"account_id"`
		}
		if err := simkit.DecodeStrict(r, &in); err != nil {
			adminError(w, err)
			return
		}
		id, err := f.CreateContact(in.AccountID)
		answer(w, map[string]string{"id": id}, err)
	})
	m.HandleFunc("POST /_admin/contacts/{id}/touch", func(w http.ResponseWriter, r *http.Request) {
		answer(w, nil, f.UpdateContact(r.PathValue("id")))
	})
	m.HandleFunc("DELETE /_admin/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, nil, f.DeleteContact(r.PathValue("id")))
	})
	m.HandleFunc("POST /_admin/pipeline_items", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			AccountID  string `json:"account_id"`
			PipelineID string `json:"pipeline_id"`
			ContactID  string `json:"contact_id"`
		}
		if err := simkit.DecodeStrict(r, &in); err != nil {
			adminError(w, err)
			return
		}
		id, err := f.CreatePipelineItem(in.AccountID, in.PipelineID, in.ContactID)
		answer(w, map[string]string{"id": id}, err)
	})
	m.HandleFunc("POST /_admin/pipeline_items/{id}/touch", func(w http.ResponseWriter, r *http.Request) {
		answer(w, nil, f.UpdatePipelineItem(r.PathValue("id")))
	})
	m.HandleFunc("DELETE /_admin/pipeline_items/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, nil, f.DeletePipelineItem(r.PathValue("id")))
	})
	m.HandleFunc("DELETE /_admin/custom_fields/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, nil, f.DeleteCustomField(r.PathValue("id")))
	})
	return m
}

func decodeDuration(r *http.Request, v any, field *string) (time.Duration, error) {
	if err := simkit.DecodeStrict(r, v); err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(*field)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q", *field)
	}
	return d, nil
}

func adminError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, ErrNotFound) {
		status = http.StatusNotFound
	}
	simkit.WriteJSON(w, status, map[string]string{"error": err.Error()})
}

func answer(w http.ResponseWriter, v any, err error) {
	switch {
	case err != nil:
		adminError(w, err)
	case v == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		simkit.WriteJSON(w, http.StatusOK, v)
	}
}

// ErrNotFound is returned by mutations of unknown records or accounts.
var ErrNotFound = errors.New("lacrmtest: not found")

// now is the mutation time, at LACRM's one-second precision.
func (f *Fake) now() time.Time { return f.clock.Now().Truncate(time.Second).UTC() }

// CreateContact adds a new person to an account ("" → the sandbox user's) and returns its id.
func (f *Fake) CreateContact(accountID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return "", fmt.Errorf("account %q: %w", accountID, ErrNotFound)
	}
	now := f.now()
	c := newPerson(f.rnd, now, now.Add(time.Second))
	c.Created, c.Updated = now, now
	a.contacts[c.ID] = c
	return c.ID, nil
}

// UpdateContact edits a contact (its job title) and bumps its LastUpdate to now.
func (f *Fake) UpdateContact(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if c := a.contacts[id]; c != nil {
			c.JobTitle = simkit.Pick(f.rnd, jobTitles)
			c.Updated = f.now()
			return nil
		}
	}
	return fmt.Errorf("contact: %w", ErrNotFound)
}

// DeleteContact removes a contact and its pipeline items, as LACRM does.
func (f *Fake) DeleteContact(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if a.contacts[id] != nil {
			delete(a.contacts, id)
			for iid, it := range a.items {
				if it.ContactID == id {
					delete(a.items, iid)
				}
			}
			return nil
		}
	}
	return fmt.Errorf("contact: %w", ErrNotFound)
}

// CreatePipelineItem adds an item in the first status of a pipeline ("" → the account's
// first) for a contact ("" → any person of the account) and returns its id.
func (f *Fake) CreatePipelineItem(accountID, pipelineID, contactID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return "", fmt.Errorf("account %q: %w", accountID, ErrNotFound)
	}
	pl := a.pipelines[0]
	if pipelineID != "" {
		if pl = a.pipeline(pipelineID); pl == nil {
			return "", fmt.Errorf("pipeline: %w", ErrNotFound)
		}
	}
	if contactID == "" {
		ids := make([]string, 0, len(a.contacts))
		for id, c := range a.contacts {
			if !c.IsCompany {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return "", fmt.Errorf("contact: %w", ErrNotFound)
		}
		slices.Sort(ids)
		contactID = simkit.Pick(f.rnd, ids)
	} else if a.contacts[contactID] == nil {
		return "", fmt.Errorf("contact: %w", ErrNotFound)
	}
	now := f.now()
	it := &item{ID: newID(f.rnd), PipelineID: pl.ID, StatusID: pl.Statuses[0].ID, ContactID: contactID,
		Created: now, Updated: now, Custom: map[string]any{"Estimated Value": float64(1000)}}
	a.items[it.ID] = it
	return it.ID, nil
}

// UpdatePipelineItem moves an item to its pipeline's next status and bumps its LastUpdate.
func (f *Fake) UpdatePipelineItem(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if it := a.items[id]; it != nil {
			pl := a.pipeline(it.PipelineID)
			i, _ := pl.status(it.StatusID)
			it.StatusID = pl.Statuses[(i+1)%len(pl.Statuses)].ID
			it.Updated = f.now()
			return nil
		}
	}
	return fmt.Errorf("pipeline item: %w", ErrNotFound)
}

// DeletePipelineItem removes an item.
func (f *Fake) DeletePipelineItem(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if a.items[id] != nil {
			delete(a.items, id)
			return nil
		}
	}
	return fmt.Errorf("pipeline item: %w", ErrNotFound)
}

// DeleteCustomField removes a custom-field definition and, as LACRM does, the values stored
// in it: the records of its type lose the key (their LastUpdate stays).
func (f *Fake) DeleteCustomField(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		i := slices.IndexFunc(a.fields, func(fd *customField) bool { return fd.ID == id })
		if i < 0 {
			continue
		}
		fd := a.fields[i]
		a.fields = slices.Delete(a.fields, i, i+1)
		switch fd.RecordType {
		case recordPipeline:
			for _, it := range a.items {
				if it.PipelineID == fd.PipelineID {
					delete(it.Custom, fd.Name)
				}
			}
		default:
			for _, c := range a.contacts {
				if c.IsCompany == (fd.RecordType == recordCompany) {
					delete(c.Custom, fd.Name)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("custom field: %w", ErrNotFound)
}

func (f *Fake) accountLocked(id string) *account {
	if id == "" {
		id = f.users[f.opts.SandboxUser].AccountID
	}
	return f.accounts[id]
}

// PipelineIDs lists an account's pipelines ("" → the sandbox user's account).
func (f *Fake) PipelineIDs(accountID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return nil
	}
	var out []string
	for _, p := range a.pipelines {
		out = append(out, p.ID)
	}
	return out
}

// ContactIDs lists an account's people ("" → the sandbox user's account), sorted.
func (f *Fake) ContactIDs(accountID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return nil
	}
	var out []string
	for id, c := range a.contacts {
		if !c.IsCompany {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// PipelineItemIDs lists an account's pipeline items ("" → the sandbox user's account), sorted.
func (f *Fake) PipelineItemIDs(accountID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return nil
	}
	out := slices.Collect(maps.Keys(a.items))
	slices.Sort(out)
	return out
}

// CustomFieldIDs lists the custom fields of an account ("" → the sandbox user's account)
// that the source syncs, contacts' then pipelines', in definition order.
func (f *Fake) CustomFieldIDs(accountID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accountLocked(accountID)
	if a == nil {
		return nil
	}
	var out []string
	for _, fd := range a.syncedFields() {
		out = append(out, fd.ID)
	}
	return out
}

// syncedFields are the custom fields the source's custom_fields stream reads: the contacts'
// and every pipeline's (companies are not leads).
func (a *account) syncedFields() []*customField {
	out := a.fieldsOf(recordContact, "")
	for _, pl := range a.pipelines {
		out = append(out, a.fieldsOf(recordPipeline, pl.ID)...)
	}
	return out
}

// GroundTruth is what leadsync must end up storing, per account: its people as leads
// (companies are not leads), and as records its pipeline items (table deals, updated at
// their LastUpdate), pipelines, statuses and the contacts' and pipelines' custom fields
// (table crm_dictionary, as "pipeline:<id>", "stage:<StatusId>", "custom_field:<FieldId>").
func (f *Fake) GroundTruth() []simkit.AccountTruth {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]simkit.AccountTruth, 0, len(f.accounts))
	for _, a := range f.accounts {
		t := simkit.AccountTruth{Source: sources.LACRM, AccountID: a.id, Leads: []simkit.LeadTruth{}}
		for _, c := range a.contacts {
			if !c.IsCompany {
				t.Leads = append(t.Leads, simkit.LeadTruth{ID: c.ID, Kind: sources.KindContact, UpdatedAt: c.Updated.UTC()})
			}
		}
		slices.SortFunc(t.Leads, func(x, y simkit.LeadTruth) int { return strings.Compare(x.ID, y.ID) })
		for _, it := range a.items {
			t.Records = append(t.Records, simkit.RecordTruth{Table: sources.TableDeals, ID: it.ID, Updated: it.Updated.UTC()})
		}
		dict := func(kind, id string) {
			t.Records = append(t.Records, simkit.RecordTruth{Table: sources.TableDictionary, ID: kind + ":" + id})
		}
		for _, pl := range a.pipelines {
			dict(sources.DictPipeline, pl.ID)
			for _, st := range pl.Statuses {
				dict(sources.DictStage, st.ID)
			}
		}
		for _, fd := range a.syncedFields() {
			dict(sources.DictCustomField, fd.ID)
		}
		slices.SortFunc(t.Records, func(x, y simkit.RecordTruth) int {
			return cmp.Or(strings.Compare(x.Table, y.Table), strings.Compare(x.ID, y.ID))
		})
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y simkit.AccountTruth) int { return strings.Compare(x.AccountID, y.AccountID) })
	return out
}
