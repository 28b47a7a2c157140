package edgechat_test

import (
	"errors"
	"reflect"
	"testing"

	"edgechat"
)

// These run against the real worker in workerd (clients/go/test.sh).

// group is a group id no other test (or earlier run) has.
func group(prefix string) string {
	return "g" + prefix + user("")
}

func TestAGroupsLifeThroughTheBackend(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	_, c := newProxy(t, url)
	owner, a, b := user("go"), user("ga"), numericUser()
	g, err := c.CreateGroup(ctx(t), owner, []string{a}, group("life"))
	if err != nil || g == "" {
		t.Fatalf("CreateGroup: %q, %v", g, err)
	}
	if made, err := c.CreateGroup(ctx(t), owner, nil, ""); err != nil || made == "" || made == g {
		t.Fatalf("CreateGroup without an id: %q, %v (want one made up)", made, err)
	}
	seq, err := c.AddGroupMember(ctx(t), g, b, edgechat.RoleAdmin)
	if err != nil || seq != 2 {
		t.Fatalf("AddGroupMember: %d, %v; want group_seq 2", seq, err)
	}
	if _, err := c.SetGroupRole(ctx(t), g, b, edgechat.RoleMember); err != nil {
		t.Fatalf("SetGroupRole: %v", err)
	}
	sent, err := c.SendGroupMessage(ctx(t), g, a, "hello", map[string]any{"n": 1}, edgechat.WithIdempotencyKey("c-1"))
	if err != nil || sent.ID == "" || sent.Duplicate {
		t.Fatalf("SendGroupMessage: %+v, %v", sent, err)
	}
	again, err := c.SendGroupMessage(ctx(t), g, a, "hello", map[string]any{"n": 1}, edgechat.WithIdempotencyKey("c-1"))
	if err != nil || again.ID != sent.ID || again.GroupSeq != sent.GroupSeq || !again.Duplicate {
		t.Fatalf("the same send again: %+v, %v; want %+v, duplicate", again, err, sent)
	}
	if _, err := c.HandGroupOver(ctx(t), g, a); err != nil {
		t.Fatalf("HandGroupOver: %v", err)
	}
	if _, err := c.RemoveGroupMember(ctx(t), g, b); err != nil {
		t.Fatalf("RemoveGroupMember: %v", err)
	}
	info, err := c.GroupInfo(ctx(t), g)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]edgechat.Role{}
	for _, m := range info.Members {
		roles[m.User] = m.Role
	}
	want := map[string]edgechat.Role{owner: edgechat.RoleAdmin, a: edgechat.RoleOwner}
	if info.Group != g || !reflect.DeepEqual(roles, want) || info.Head != sent.GroupSeq+2 {
		t.Fatalf("GroupInfo: %+v; want %v with head %d", info, want, sent.GroupSeq+2)
	}
	// The whole history, newest first, two to a page.
	var kinds []string
	var seqs []int64
	for before := int64(0); ; {
		page, err := c.GroupHistory(ctx(t), g, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			kinds = append(kinds, e.Kind)
			seqs = append(seqs, e.GroupSeq)
			if e.Kind == "message" && (e.MID != sent.ID || e.Body["message"] != "hello" || e.Body["n"] != 1.0) {
				t.Fatalf("the message in history: %+v", e)
			}
		}
		if before = page.Next; before == 0 {
			break
		}
	}
	if !reflect.DeepEqual(seqs, []int64{6, 5, 4, 3, 2, 1}) || kinds[2] != "message" {
		t.Fatalf("history: %v %v", seqs, kinds)
	}
	// The member's own devices read the same history.
	var mine struct{ Items []map[string]any }
	asUser(t, url, a, "/v1/history?group="+g, &mine)
	if len(mine.Items) != 6 {
		t.Fatalf("%s's history of %s: %v", a, g, mine.Items)
	}
}

func TestGroupRefusalsAreTypedWithTheirCode(t *testing.T) {
	url := workerURL(t, "EDGE_CHAT_URL")
	p, c := newProxy(t, url)
	owner, a, stranger := user("ro"), user("ra"), user("rs")
	g, err := c.CreateGroup(ctx(t), owner, []string{a}, "")
	if err != nil {
		t.Fatal(err)
	}
	coded := func(err error, sentinel error, status int, code string) {
		t.Helper()
		var e *edgechat.Error
		if !errors.Is(err, sentinel) || !errors.As(err, &e) || e.Status != status || e.Code != code {
			t.Fatalf("want %d %s, got %v", status, code, err)
		}
	}
	_, err = c.SendGroupMessage(ctx(t), g, stranger, "hi", nil)
	coded(err, edgechat.ErrForbidden, 403, "not_member")
	_, err = c.GroupInfo(ctx(t), group("none"))
	coded(err, edgechat.ErrNotFound, 404, "no_such_group")
	_, err = c.CreateGroup(ctx(t), owner, nil, g)
	coded(err, edgechat.ErrConflict, 409, "group_exists")
	_, err = c.AddGroupMember(ctx(t), g, a, "")
	coded(err, edgechat.ErrConflict, 409, "already_member")
	_, err = c.RemoveGroupMember(ctx(t), g, owner)
	coded(err, edgechat.ErrConflict, 409, "cannot_remove_owner")
	_, err = c.RemoveGroupMember(ctx(t), g, stranger)
	coded(err, edgechat.ErrNotFound, 404, "no_such_member")
	before := p.requests()
	bad := []struct {
		err         error
		code, field string
	}{
		{second(c.SetGroupRole(ctx(t), g, a, edgechat.RoleOwner)), "invalid_role", "role"},
		{second(c.AddGroupMember(ctx(t), g, stranger, "boss")), "invalid_role", "role"},
		{second(c.SendGroupMessage(ctx(t), g, a, "", nil)), "empty_message", "message"},
		{second(c.AddGroupMember(ctx(t), g, "a b", "")), "bad_field", "user"},
		{second(c.CreateGroup(ctx(t), owner, nil, "Not-A-Group")), "bad_field", "group"},
	}
	for i, tc := range bad {
		var e *edgechat.BadRequestError
		if !errors.As(tc.err, &e) || e.Code != tc.code || e.Field != tc.field {
			t.Errorf("case %d: want a 400 %s on %q, got %#v (%v)", i, tc.code, tc.field, e, tc.err)
		}
	}
	if p.requests() != before+len(bad) {
		t.Fatalf("a 400 was retried (%d requests for %d calls)", p.requests()-before, len(bad))
	}
}

// second is the error of a call's two results.
func second[T any](_ T, err error) error { return err }
