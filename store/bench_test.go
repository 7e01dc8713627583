package store_test

import (
	"context"
	"testing"
)

// BenchmarkGrantToken is the cost of every API call's Token on a fresh grant (a read and a
// decryption), against BenchmarkRefresh, a full refresh cycle (lock, token call to a local
// server, encrypted compare-and-swap, fsync'd commit). Run: go test -run=^$ -bench=. ./store/
func BenchmarkGrantToken(b *testing.B) {
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			tb := setup(b, bk)
			g := tb.grant(tb.st)
			b.ResetTimer()
			for b.Loop() {
				if _, err := g.Token(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRefresh(b *testing.B) {
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			tb := setup(b, bk)
			g := tb.grant(tb.st)
			b.ResetTimer()
			for b.Loop() {
				tok, err := g.Token(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				g.Invalidate(tok) // the next Token refreshes
			}
		})
	}
}
