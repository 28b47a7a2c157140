package edgechat_test

import (
	"errors"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"edgechat"
)

// These run against the real worker in workerd (clients/go/test.sh).

func TestSendSysMsgIsDeliveredAsIs(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	uid := numericUser()
	msg := map[string]any{"type": "like", "contentId": 42, "song": map[string]any{"name": "Blue"}}
	id, err := c.SendSysMsg(ctx(t), uid, msg)
	if err != nil || id == "" {
		t.Fatalf("SendSysMsg: %q, %v", id, err)
	}
	if _, ok := msg["uid"]; ok {
		t.Fatal("the caller's map was changed")
	}
	sys := historyOf(t, url, uid).Sys
	if len(sys) != 1 {
		t.Fatalf("want one system message in %s's history, got %v", uid, sys)
	}
	m := sys[0]
	if m["id"] != id || m["type"] != "like" || m["contentId"] != 42.0 || m["song"].(map[string]any)["name"] != "Blue" {
		t.Fatalf("delivered %v", m)
	}
	// Digit uids go as JSON numbers, as the original backend sent them.
	if n, ok := m["uid"].(float64); !ok || strconv.FormatFloat(n, 'f', 0, 64) != uid {
		t.Fatalf("uid delivered as %#v, want the number %s", m["uid"], uid)
	}
}

func TestSendUsrMsgIsInBothHistories(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	from, to := user("ua"), user("ub")
	id, err := c.SendUsrMsg(ctx(t), from, to, "Welcome!", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	got := historyOf(t, url, to).Usr
	if len(got) != 1 || got[0]["id"] != id || got[0]["message"] != "Welcome!" || got[0]["fromUser"] != from || got[0]["n"] != 1.0 {
		t.Fatalf("receiver's history: %v", got)
	}
	if sent := ids(historyOf(t, url, from).Usr); !reflect.DeepEqual(sent, []string{id}) {
		t.Fatalf("sender's history: %v, want [%s]", sent, id)
	}
}

func TestBatchesAnswerAnIDPerMessageInOrder(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	a, b := user("ba"), user("bb")
	got, err := c.SendSysMsgs(ctx(t), []edgechat.SysMsg{
		{UID: a, Fields: map[string]any{"n": 1}},
		{UID: b, Fields: map[string]any{"n": 2}},
		{UID: a, Fields: map[string]any{"n": 3}},
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("SendSysMsgs: %v, %v", got, err)
	}
	if h := ids(historyOf(t, url, a).Sys); !reflect.DeepEqual(h, []string{got[2], got[0]}) {
		t.Fatalf("%s's history %v, want [%s %s] (newest first)", a, h, got[2], got[0])
	}
	if h := ids(historyOf(t, url, b).Sys); !reflect.DeepEqual(h, []string{got[1]}) {
		t.Fatalf("%s's history %v, want [%s]", b, h, got[1])
	}
	chats, err := c.SendUsrMsgs(ctx(t), []edgechat.UsrMsg{{From: a, To: b, Message: "one"}, {From: b, To: a, Message: "two"}})
	if err != nil || len(chats) != 2 {
		t.Fatalf("SendUsrMsgs: %v, %v", chats, err)
	}
	// Two senders: two objects, served in parallel, so no order between them.
	h := ids(historyOf(t, url, a).Usr)
	sort.Strings(h)
	sort.Strings(chats)
	if !reflect.DeepEqual(h, chats) {
		t.Fatalf("%s's chats %v, want %v", a, h, chats)
	}
}

func TestTheSameKeyStoresOnce(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	uid, from := user("ka"), user("kb")
	key := user("job-")
	first, err1 := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "x"}, edgechat.WithIdempotencyKey(key))
	again, err2 := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "x"}, edgechat.WithIdempotencyKey(key))
	if err1 != nil || err2 != nil || first != again {
		t.Fatalf("same key: ids %q and %q (%v, %v), want one id", first, again, err1, err2)
	}
	// Without the key, a second call is a second message.
	other, _ := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "x"})
	if h := ids(historyOf(t, url, uid).Sys); !reflect.DeepEqual(h, []string{other, first}) {
		t.Fatalf("history %v, want [%s %s]", h, other, first)
	}

	batch := []edgechat.UsrMsg{{From: from, To: uid, Message: "a"}, {From: from, To: uid, Message: "b"}}
	one, _ := c.SendUsrMsgs(ctx(t), batch, edgechat.WithIdempotencyKey(key))
	two, err := c.SendUsrMsgs(ctx(t), batch, edgechat.WithIdempotencyKey(key))
	if err != nil || !reflect.DeepEqual(one, two) {
		t.Fatalf("same key: ids %v and %v (%v)", one, two, err)
	}
	if h := ids(historyOf(t, url, uid).Usr); !reflect.DeepEqual(h, []string{one[1], one[0]}) {
		t.Fatalf("chats %v, want each once: [%s %s]", h, one[1], one[0])
	}
}

// An answer lost after the worker stored the message (a 503 in its place,
// then a connection cut): the retries carry the call's key, so it is stored once.
func TestRetriesOfALostAnswerStoreOnce(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url, "lost", "cut")
	uid := user("r")
	id, err := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "retried"})
	if err != nil {
		t.Fatal(err)
	}
	if k := p.sent(); len(k) != 3 || k[0] == "" || k[1] != k[0] || k[2] != k[0] {
		t.Fatalf("want 3 attempts with one key, got %q", k)
	}
	if h := ids(historyOf(t, url, uid).Sys); !reflect.DeepEqual(h, []string{id}) {
		t.Fatalf("history %v, want [%s] once", h, id)
	}

	p, c = newProxy(t, url, "cut", "lost")
	from := user("rf")
	got, err := c.SendUsrMsgs(ctx(t), []edgechat.UsrMsg{{From: from, To: uid, Message: "a"}, {From: from, To: uid, Message: "b"}})
	if err != nil || p.requests() != 3 {
		t.Fatalf("SendUsrMsgs: %v after %d requests", err, p.requests())
	}
	if h := ids(historyOf(t, url, from).Usr); !reflect.DeepEqual(h, []string{got[1], got[0]}) {
		t.Fatalf("chats %v, want each once: [%s %s]", h, got[1], got[0])
	}
}

func TestBadRequestsNameTheFieldAndStoreNothing(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url)
	ok := user("br")
	cases := []struct {
		call               func() error
		code, field, error string
		index              int
	}{
		{func() error { _, err := c.SendSysMsg(ctx(t), "a b", nil); return err }, "bad_field", "uid", "uid", -1},
		{func() error {
			_, err := c.SendSysMsgs(ctx(t), []edgechat.SysMsg{{UID: ok}, {UID: ""}})
			return err
		}, "bad_field", "uid", "item 1", 1},
		{func() error { _, err := c.SendUsrMsg(ctx(t), ok, "x", "", nil); return err }, "empty_message", "message", "message", -1},
		{func() error { _, err := c.SendUsrMsg(ctx(t), ok, "a/b", "m", nil); return err }, "bad_field", "toUser", "toUser", -1},
		{func() error {
			_, err := c.SendSysMsg(ctx(t), ok, nil, edgechat.WithIdempotencyKey(strings.Repeat("k", 129)))
			return err
		}, "bad_field", "Idempotency-Key", "Idempotency-Key", -1},
	}
	for i, tc := range cases {
		err := tc.call()
		var bad *edgechat.BadRequestError
		if !errors.As(err, &bad) || bad.Code != tc.code || bad.Field != tc.field || bad.Index != tc.index || !strings.Contains(bad.Message, tc.error) {
			t.Errorf("case %d: want a 400 %s on %q at %d, got %#v (%v)", i, tc.code, tc.field, tc.index, bad, err)
		}
		if p.requests() != i+1 {
			t.Errorf("case %d: a 400 was retried (%d requests)", i, p.requests())
		}
	}
	if h := historyOf(t, url, ok); len(h.Sys)+len(h.Usr) != 0 {
		t.Fatalf("a refused call stored %v", h)
	}
}

func TestAWrongKeyIsUnauthorized(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url)
	c.APIKey = "wrong"
	calls := map[string]func() error{
		"SendSysMsg": func() error { _, err := c.SendSysMsg(ctx(t), "1", nil); return err },
		"EditMessage": func() error {
			_, err := c.EditMessage(ctx(t), "1", strings.Repeat("0", 28), "x", nil)
			return err
		},
		"Block": func() error { return c.Block(ctx(t), "1", "2", true) },
	}
	for name, call := range calls {
		before := p.requests()
		err := call()
		var e *edgechat.Error
		if !errors.Is(err, edgechat.ErrUnauthorized) || !errors.As(err, &e) || e.Status != 401 {
			t.Errorf("%s: want ErrUnauthorized, got %v", name, err)
		}
		if p.requests() != before+1 {
			t.Errorf("%s: a 401 was retried", name)
		}
	}
}

// The tight worker: BODY_MAX_BYTES 2048, API_MAX_BATCH 3, QUEUE_MAX 2, QUEUE_TTL_S 3.

func TestTooLargeCallsStoreNothing(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_TIGHT_URL")
	p, c := newProxy(t, url)
	uid := user("tl")
	_, err := c.SendSysMsg(ctx(t), uid, map[string]any{"pad": strings.Repeat("x", 3000)})
	var big *edgechat.TooLargeError
	if !errors.As(err, &big) || !strings.Contains(big.Message, "BODY_MAX_BYTES") || big.Code != "body_too_large" || big.Limit != 2048 {
		t.Fatalf("a body over BODY_MAX_BYTES: want a TooLargeError body_too_large of 2048, got %#v (%v)", big, err)
	}
	four := []edgechat.SysMsg{{UID: uid}, {UID: uid}, {UID: uid}, {UID: uid}}
	if _, err := c.SendSysMsgs(ctx(t), four); !errors.As(err, &big) || !strings.Contains(big.Message, "API_MAX_BATCH") || big.Code != "batch_too_large" || big.Limit != 3 {
		t.Fatalf("a batch over API_MAX_BATCH: want a TooLargeError batch_too_large of 3, got %#v (%v)", big, err)
	}
	if p.requests() != 2 {
		t.Fatalf("a 413 was retried (%d requests)", p.requests())
	}
	if h := historyOf(t, url, uid); len(h.Sys) != 0 {
		t.Fatalf("a refused call stored %v", h.Sys)
	}
}

func TestAFullRecipientIsTypedAndTheCallMayBeMadeAgain(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_TIGHT_URL")
	p, c := newProxy(t, url)
	full, other := user("ff"), user("fo")
	for i := 0; i < 2; i++ {
		if _, err := c.SendSysMsg(ctx(t), full, map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	before := p.requests()
	_, err := c.SendSysMsg(ctx(t), full, nil)
	var rf *edgechat.RecipientFullError
	if !errors.As(err, &rf) || rf.User != full || p.requests() != before+1 {
		t.Fatalf("want a RecipientFullError for %s, not retried; got %v after %d requests", full, err, p.requests()-before)
	}

	batch := []edgechat.SysMsg{{UID: full, Fields: map[string]any{"n": "late"}}, {UID: other}}
	got, err := c.SendSysMsgs(ctx(t), batch)
	var pe *edgechat.PartialError
	if !errors.As(err, &pe) || pe.Status != 507 || got[0] != "" || got[1] == "" || pe.Errors[1] != nil {
		t.Fatalf("want a 507 PartialError storing only the second, got %v (ids %q)", err, got)
	}
	if !errors.As(err, &rf) || rf.User != full || !errors.As(pe.Errors[0], &rf) || errors.Is(err, edgechat.ErrUnavailable) {
		t.Fatalf("want the PartialError to unwrap to the full recipient, got %v", err)
	}
	// Made again with its key until the queued ones expire: the stored one
	// keeps its id and is stored once, the other goes through.
	var again []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if again, err = c.SendSysMsgs(ctx(t), batch, edgechat.WithIdempotencyKey(pe.Key)); err == nil {
			break
		}
		if !errors.As(err, &rf) || again[1] != got[1] {
			t.Fatalf("made again while full: want the same id for the stored one, got %q, %v", again, err)
		}
	}
	if err != nil || again[0] == "" || again[1] != got[1] {
		t.Fatalf("once the queue expired: want both stored, the second with its id %s; got %q, %v", got[1], again, err)
	}
	if h := ids(historyOf(t, url, other).Sys); !reflect.DeepEqual(h, []string{got[1]}) {
		t.Fatalf("%s's history %v, want [%s] once", other, h, got[1])
	}
	if h := ids(historyOf(t, url, full).Sys); len(h) == 0 || h[0] != again[0] {
		t.Fatalf("%s's history %v, want %s newest", full, h, again[0])
	}
}

func TestModerationEditsAndDeletes(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	a, b := user("ma"), user("mb")
	mid, err := c.SendUsrMsg(ctx(t), a, b, "rude", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := edgechat.WithIdempotencyKey(user("edit-"))
	op, err1 := c.EditMessage(ctx(t), a, mid, "[removed]", map[string]any{"by": "moderator"}, key)
	op2, err2 := c.EditMessage(ctx(t), a, mid, "[removed]", map[string]any{"by": "moderator"}, key)
	if err1 != nil || err2 != nil || op == "" || op2 != op {
		t.Fatalf("edit with one key twice: %q %q (%v, %v), want one op id", op, op2, err1, err2)
	}
	m := historyOf(t, url, b).Usr[0]
	if m["id"] != mid || m["message"] != "[removed]" || m["by"] != "moderator" || m["edit_version"] != 1.0 {
		t.Fatalf("edited once in %s's history: %v", b, m)
	}

	key = edgechat.WithIdempotencyKey(user("delete-"))
	del, err1 := c.DeleteMessage(ctx(t), a, mid, key)
	del2, err2 := c.DeleteMessage(ctx(t), a, mid, key)
	if err1 != nil || err2 != nil || del == "" || del2 != del {
		t.Fatalf("delete with one key twice: %q %q (%v, %v), want one op id", del, del2, err1, err2)
	}
	m = historyOf(t, url, b).Usr[0]
	if _, has := m["message"]; has || m["deleted_at"] == nil {
		t.Fatalf("deleted in %s's history: %v", b, m)
	}
	if _, err := c.DeleteMessage(ctx(t), a, mid); !errors.Is(err, edgechat.ErrConflict) {
		t.Fatalf("a second delete: want ErrConflict, got %v", err)
	}
	if _, err := c.DeleteMessage(ctx(t), b, mid); !errors.Is(err, edgechat.ErrNotFound) {
		t.Fatalf("a delete of another's chat: want ErrNotFound, got %v", err)
	}
	var bad *edgechat.BadRequestError
	if _, err := c.EditMessage(ctx(t), a, "nope", "x", nil); !errors.As(err, &bad) || bad.Field != "mid" {
		t.Fatalf("a bad mid: want a 400 on mid, got %v", err)
	}
}

func TestBlock(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url)
	a, b := user("bl"), user("bm")
	var lists struct{ Blocked []string }
	if err := c.Block(ctx(t), a, b, true); err != nil {
		t.Fatal(err)
	}
	asUser(t, url, a, "/v1/blocks", &lists)
	if !reflect.DeepEqual(lists.Blocked, []string{b}) {
		t.Fatalf("%s blocks %v, want [%s]", a, lists.Blocked, b)
	}
	if err := c.Block(ctx(t), a, b, false); err != nil {
		t.Fatal(err)
	}
	asUser(t, url, a, "/v1/blocks", &lists)
	if len(lists.Blocked) != 0 {
		t.Fatalf("%s still blocks %v", a, lists.Blocked)
	}
	if k := p.sent(); k[0] != "" {
		t.Fatalf("a block sent the Idempotency-Key %q, which the worker ignores", k[0])
	}
	var bad *edgechat.BadRequestError
	if err := c.Block(ctx(t), a, a, true); !errors.As(err, &bad) {
		t.Fatalf("blocking oneself: want a 400, got %v", err)
	}
}

// A key is bound to the messages it first came with: the same key with
// other messages is refused (ErrKeyReused) and stores nothing, and it is
// not retried.
func TestAKeyReusedForOtherMessagesIsRefused(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url)
	uid, from := user("kr"), user("ks")
	key := edgechat.WithIdempotencyKey(user("job-"))
	first, err := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "a"}, key)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.SendSysMsg(ctx(t), uid, map[string]any{"type": "a"}, key); err != nil || again != first {
		t.Fatalf("the same call again: %q, %v; want %q", again, err, first)
	}
	before := p.requests()
	_, err = c.SendSysMsg(ctx(t), uid, map[string]any{"type": "b"}, key)
	var e *edgechat.Error
	if !errors.Is(err, edgechat.ErrKeyReused) || !errors.As(err, &e) || e.Status != 422 || e.Code != "idempotency_key_reused" {
		t.Fatalf("other message, same key: want ErrKeyReused (422), got %v", err)
	}
	if p.requests() != before+1 {
		t.Fatalf("a 422 was retried (%d requests)", p.requests()-before)
	}
	if h := historyOf(t, url, uid).Sys; len(h) != 1 || h[0]["type"] != "a" {
		t.Fatalf("history %v, want the first message alone", h)
	}

	batchKey := edgechat.WithIdempotencyKey(user("batch-"))
	if _, err := c.SendUsrMsgs(ctx(t), []edgechat.UsrMsg{{From: from, To: uid, Message: "one"}}, batchKey); err != nil {
		t.Fatal(err)
	}
	ids, err := c.SendUsrMsgs(ctx(t), []edgechat.UsrMsg{{From: from, To: uid, Message: "two"}}, batchKey)
	var pe *edgechat.PartialError
	if !errors.As(err, &pe) || pe.Status != 422 || !errors.Is(err, edgechat.ErrKeyReused) || ids[0] != "" {
		t.Fatalf("a batch with a reused key: want a 422 PartialError unwrapping to ErrKeyReused, got %v (%q)", err, ids)
	}
	if h := historyOf(t, url, uid).Usr; len(h) != 1 || h[0]["message"] != "one" {
		t.Fatalf("chats %v, want the first alone", h)
	}
}
