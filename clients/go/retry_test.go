package edgechat_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"edgechat"
)

// These need no worker: the proxy answers 503 itself.

func TestRetriesGiveUpAfterAttemptsWithOneKey(t *testing.T) {
	p, c := newProxy(t, "", strings.Split(strings.Repeat("503 ", 10), " ")...)
	c.Retry.Attempts = 3
	_, err := c.SendSysMsg(ctx(t), "1", map[string]any{"type": "x"})
	if !errors.Is(err, edgechat.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if p.requests() != 3 {
		t.Fatalf("want 3 attempts, got %d", p.requests())
	}
	if k := p.sent(); len(k[0]) != 32 || k[1] != k[0] || k[2] != k[0] {
		t.Fatalf("want one random key on every attempt, got %q", k)
	}
	// The next call has a key of its own.
	c.SendSysMsg(ctx(t), "1", map[string]any{"type": "x"})
	if k := p.sent(); k[3] == k[0] {
		t.Fatalf("two calls shared the key %q", k[0])
	}
}

func TestRetriesStopAtTheBudgetAndTheContext(t *testing.T) {
	p, c := newProxy(t, "", strings.Split(strings.Repeat("503 ", 100), " ")...)
	c.Retry = edgechat.RetryPolicy{Attempts: 100, Base: 20 * time.Millisecond, Max: 40 * time.Millisecond, Budget: 300 * time.Millisecond}
	start := time.Now()
	_, err := c.SendSysMsg(ctx(t), "1", nil)
	if took := time.Since(start); !errors.Is(err, edgechat.ErrUnavailable) || took > time.Second {
		t.Fatalf("want ErrUnavailable within the 300 ms budget, got %v after %v", err, took)
	}
	if n := p.requests(); n < 3 || n >= 100 {
		t.Fatalf("want a few attempts within the budget, got %d", n)
	}

	c.Retry = edgechat.RetryPolicy{Base: 10 * time.Second}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.SendUsrMsg(short, "1", "2", "hi", nil)
	if took := time.Since(start); err == nil || took > time.Second {
		t.Fatalf("want the call to end with its context, got %v after %v", err, took)
	}
}

func TestNoRetryWithoutTheNeed(t *testing.T) {
	p, c := newProxy(t, "", "503", "503")
	c.Retry.Attempts = 1
	if _, err := c.SendSysMsg(ctx(t), "1", nil); !errors.Is(err, edgechat.ErrUnavailable) || p.requests() != 1 {
		t.Fatalf("Attempts 1: want one request and ErrUnavailable, got %d and %v", p.requests(), err)
	}
	// An empty batch sends nothing.
	if ids, err := c.SendUsrMsgs(ctx(t), nil); ids != nil || err != nil || p.requests() != 1 {
		t.Fatalf("an empty batch: want nothing sent, got %v %v after %d requests", ids, err, p.requests())
	}
}

func TestAPartial503IsRetriedThenSaysWhatWasStored(t *testing.T) {
	p, c := newProxy(t, "", "partial", "partial", "partial")
	c.Retry.Attempts = 3
	msgs := []edgechat.SysMsg{{UID: "1"}, {UID: "2"}}
	ids, err := c.SendSysMsgs(ctx(t), msgs)
	var pe *edgechat.PartialError
	if !errors.As(err, &pe) || !errors.Is(err, edgechat.ErrUnavailable) || p.requests() != 3 {
		t.Fatalf("want a PartialError that is ErrUnavailable after 3 attempts, got %v after %d", err, p.requests())
	}
	if ids[0] != "a" || ids[1] != "" || pe.Errors[0] != nil || pe.Errors[1] != edgechat.ErrUnavailable || pe.Key != p.sent()[0] {
		t.Fatalf("want ids [a \"\"], errors [nil ErrUnavailable] and the call's key; got %q, %v, %q", ids, pe.Errors, pe.Key)
	}
}
