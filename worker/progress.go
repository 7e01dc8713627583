package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Progress shows a run's progress: a redrawn status line on a terminal, periodic log lines
// otherwise. A nil *Progress does nothing.
type Progress struct {
	out      io.Writer
	tty      bool
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	start time.Time
	order []string
	conns map[string]*connProgress
}

type connProgress struct {
	total, done, failed, restricted int
	leads                           int64
}

// NewProgress writes to out; tty selects the redrawn line over log lines (every interval).
func NewProgress(out io.Writer, tty bool, log *slog.Logger, interval time.Duration) *Progress {
	if interval <= 0 {
		interval = 10 * time.Second
		if tty {
			interval = 250 * time.Millisecond
		}
	}
	return &Progress{out: out, tty: tty, log: log, interval: interval, now: time.Now,
		start: time.Now(), conns: map[string]*connProgress{}}
}

// Run redraws until ctx ends, then prints the final state.
func (p *Progress) Run(ctx context.Context) {
	if p == nil {
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw(true)
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *Progress) conn(name string) *connProgress {
	c := p.conns[name]
	if c == nil {
		c = &connProgress{}
		p.conns[name] = c
		p.order = append(p.order, name)
	}
	return c
}

// AddAccounts announces n accounts to sync for a connection.
func (p *Progress) AddAccounts(conn string, n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn(conn).total += n
}

// AccountDone counts one finished account.
func (p *Progress) AccountDone(conn, outcome string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(conn)
	c.done++
	switch outcome {
	case OutcomeFailed:
		c.failed++
	case OutcomeRestricted:
		c.restricted++
	}
}

// Leads counts leads received.
func (p *Progress) Leads(conn string, n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn(conn).leads += n
}

func (p *Progress) lineLocked() string {
	elapsed := p.now().Sub(p.start)
	var parts []string
	var total, done int
	var leads int64
	for _, name := range p.order {
		c := p.conns[name]
		total, done, leads = total+c.total, done+c.done, leads+c.leads
		s := fmt.Sprintf("%s %d/%d", name, c.done, c.total)
		if c.failed > 0 {
			s += fmt.Sprintf(" (%d failed)", c.failed)
		}
		if c.restricted > 0 {
			s += fmt.Sprintf(" (%d restricted)", c.restricted)
		}
		parts = append(parts, s)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(leads) / elapsed.Seconds()
	}
	eta := "?"
	if done > 0 && total >= done {
		eta = (time.Duration(float64(elapsed) / float64(done) * float64(total-done))).Round(time.Second).String()
	}
	return fmt.Sprintf("accounts %d/%d · %d leads · %.0f leads/s · ETA %s · %s",
		done, total, leads, rate, eta, strings.Join(parts, " · "))
}

func (p *Progress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.lineLocked()
	if p.tty {
		// \r and clear-to-end redraw the line in place.
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		if final {
			fmt.Fprintln(p.out)
		}
		return
	}
	if p.log != nil && len(p.order) > 0 {
		p.log.Info("progress", slog.String("status", line))
	}
}
