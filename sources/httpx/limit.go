package httpx

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// bucket is the proactive limiter of one rate-limit bucket, plus a "not before" time set by
// a 429 so every caller on the bucket waits out the vendor's throttle, not only the one
// that received it.
type bucket struct {
	lim *rate.Limiter

	mu        sync.Mutex
	notBefore time.Time
}

// bucket returns the bucket named name, creating its limiter on first use.
func (c *Client) bucket(name string) *bucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.buckets[name]; ok {
		return b
	}
	r, burst := rate.Inf, 1
	if c.cfg.Limit != nil {
		r, burst = c.cfg.Limit(name)
	}
	b := &bucket{lim: rate.NewLimiter(r, max(burst, 1))}
	c.buckets[name] = b
	return b
}

func (b *bucket) hold(until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.notBefore) {
		b.notBefore = until
	}
}

func (b *bucket) heldFor(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.notBefore.Sub(now)
}

// gate waits until the bucket may send: past any 429 hold, then a token from the limiter.
// Times come from Config.Clock and waits go through Config.Sleep, so tests need no sleeping.
func (c *Client) gate(ctx context.Context, b *bucket) error {
	if d := b.heldFor(c.cfg.Clock()); d > 0 {
		if err := c.cfg.Sleep(ctx, d); err != nil {
			return err
		}
	}
	now := c.cfg.Clock()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		// Only when Tune set a burst of 0: the limiter can never grant, so don't deadlock.
		return nil
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := c.cfg.Sleep(ctx, d); err != nil {
			r.CancelAt(c.cfg.Clock()) // give the slot back to the other callers
			return err
		}
	}
	return nil
}
