package lacrm

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// cursorJSON is the LACRM cursor of a stream. Each of its listings ("contacts", or
// "pipeline:<id>" for the pipeline_items stream) has a watermark:
// the newest LastUpdate seen by its last *completed* pass. Incremental paging is newest first, so while
// a pass is under way its pages carry the old watermark plus the pass's progress (next page,
// highest LastUpdate so far); only the page that ends the pass moves the watermark. A crash
// mid-pass resumes at the next page and still finishes against the old watermark: records
// are at worst read twice, which the sink's upserts absorb, and never skipped for good.
type cursorJSON struct {
	V       int                    `json:"v"`
	Streams map[string]streamState `json:"streams"`
}

type streamState struct {
	Watermark time.Time `json:"watermark,omitzero"`
	Pass      *pass     `json:"pass,omitempty"`
}

// pass is an unfinished pass over a stream.
type pass struct {
	Page int       `json:"page"` // next page to read
	High time.Time `json:"high,omitzero"`
	Full bool      `json:"full,omitempty"`
	// Start is when a full pass began (full passes page in DateCreated order).
	Start time.Time `json:"start,omitzero"`
}

// watermark is the stream's watermark once p completes, from old. A full pass pages in
// creation order, so a record it read early and that was edited later in the pass can be
// older than High: its watermark stays at the pass start, and the next incremental pass
// re-reads everything edited since then (less Lookback, which also covers clock skew).
func (p *pass) watermark(old time.Time) time.Time {
	high := p.High
	if p.Full && high.After(p.Start) {
		high = p.Start
	}
	if high.After(old) {
		return high
	}
	return old
}

const cursorVersion = 1

func parseCursor(cur sources.Cursor) (*cursorJSON, error) {
	c := &cursorJSON{V: cursorVersion, Streams: map[string]streamState{}}
	if cur == "" {
		return c, nil
	}
	if err := json.Unmarshal([]byte(cur), c); err != nil {
		return nil, fmt.Errorf("lacrm: unreadable cursor: %w", err)
	}
	if c.V != cursorVersion {
		return nil, fmt.Errorf("lacrm: cursor version %d, want %d", c.V, cursorVersion)
	}
	if c.Streams == nil {
		c.Streams = map[string]streamState{}
	}
	for k, s := range c.Streams {
		if s.Pass != nil && s.Pass.Page < 1 {
			return nil, fmt.Errorf("lacrm: cursor stream %s: page %d", k, s.Pass.Page)
		}
	}
	return c, nil
}

// keep drops the state of listings the stream no longer reads (a pipeline removed or
// unselected, or the other stream's listings in a cursor written before streams were split).
func (c *cursorJSON) keep(streams []listing) {
	want := map[string]bool{}
	for _, s := range streams {
		want[s.key] = true
	}
	for k := range c.Streams {
		if !want[k] {
			delete(c.Streams, k)
		}
	}
}

func (c *cursorJSON) encode() (sources.Cursor, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("lacrm: encode cursor: %w", err)
	}
	return sources.Cursor(b), nil
}
