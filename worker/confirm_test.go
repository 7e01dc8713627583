package worker_test

import (
	"context"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/worker"
)

// deletingSource is LACRM with a user who deletes a contact from the first page while the
// first full pass is on its way to the second: page numbers then shift, and the pass reads past the
// first contact of its second page.
type deletingSource struct {
	sources.Source
	delete func(id string) error

	mu      sync.Mutex
	deleted string
	missing []string // what the worker asked to confirm
}

func (s *deletingSource) Read(ctx context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		first := true
		for p, err := range s.Source.Read(ctx, a, stream, cur, o) {
			if !yield(p, err) {
				return
			}
			s.mu.Lock()
			once := s.deleted == "" && first && o.Full && err == nil && len(p.Leads) > 0 && p.Leads[0].Kind == sources.KindContact
			if once {
				s.deleted = p.Leads[0].ID
			}
			s.mu.Unlock()
			first = false
			if once {
				if err := s.delete(p.Leads[0].ID); err != nil {
					yield(sources.Page{}, err)
					return
				}
			}
		}
	}
}

func (s *deletingSource) Confirm(ctx context.Context, a sources.Account, stream string, missing []string) iter.Seq2[sources.Page, error] {
	s.mu.Lock()
	if stream == "contacts" {
		s.missing = slices.Clone(missing)
	}
	s.mu.Unlock()
	return s.Source.(sources.Confirmer).Confirm(ctx, a, stream, missing)
}

// A full pass over page-number paging deletes only what a second read confirms gone: a
// contact deleted mid-pass makes the first read miss a live one, which must stay live.
func TestFullPassConfirmsWhatItMissedBeforeDeleting(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(23), testenv.SQLite)
	cfg := env.Config(t)
	for i := range cfg.Connections {
		if cfg.Connections[i].Source == sources.LACRM {
			cfg.Connections[i].Options.(*lacrm.Options).PageSize = 20 // several pages, so a shift crosses a page boundary
		}
	}
	a := testenv.Authorize(t, env.AppWith(t, cfg, app.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var src *deletingSource
	for i, c := range a.Worker.Connections {
		if c.Source.Name() == sources.LACRM {
			src = &deletingSource{Source: c.Source, delete: env.Sandbox.LACRM.DeleteContact}
			a.Worker.Connections[i].Source = src
		}
	}
	run := func(full bool) worker.Result {
		res, err := a.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerBackfill, Full: full})
		if err != nil || !res.OK() {
			t.Fatalf("run: %v %v %v", res.Status, err, res.Failures)
		}
		return res
	}
	run(false)
	run(true)
	src.mu.Lock()
	deleted, missing := src.deleted, src.missing
	src.mu.Unlock()
	if deleted == "" {
		t.Fatal("no contact was deleted during the full pass")
	}
	// The deleted contact was read before it went, so it is still live here: any other
	// difference is a live lead the pass soft-deleted.
	for _, d := range env.Diff(t) {
		if !strings.HasSuffix(d, ": extra lead "+deleted) {
			t.Errorf("after a full pass with a contact deleted during it: %s (the pass asked to confirm %q)", d, missing)
		}
	}
	if len(missing) == 0 {
		t.Error("the first read missed nothing: the test no longer makes it skip a live contact")
	}
	// The deleted contact was read before it went; the next full pass removes it.
	run(true)
	env.RequireTruth(t)
}
