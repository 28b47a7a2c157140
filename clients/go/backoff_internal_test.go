package edgechat

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToMaxWithHalfOfItRandom(t *testing.T) {
	p := RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	for n, d := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		d *= time.Millisecond
		for i := 0; i < 50; i++ {
			if w := p.wait(n); w < d/2 || w > d {
				t.Fatalf("retry %d waits %v, want %v to %v", n, w, d/2, d)
			}
		}
	}
	// A long base and many retries: no overflow into a negative wait.
	p = RetryPolicy{Base: time.Hour, Max: 2 * time.Hour}
	if w := p.wait(62); w < time.Hour || w > 2*time.Hour {
		t.Fatalf("retry 62 waits %v, want 1 h to 2 h", w)
	}
}
