// Group conversations through the backend API (/api/groups…): the backend
// creates groups for any owner, changes members and roles, reads a group's
// members and its whole history, and sends as a member (a bot, a
// moderator). Refusals are *Error with the worker's Code (not_member,
// not_allowed, no_such_group, no_such_member, group_exists,
// already_member, group_full, owner_must_hand_over, cannot_remove_owner,
// unchanged, …) and match ErrForbidden, ErrNotFound or ErrConflict; a bad
// argument is a *BadRequestError (invalid_role, empty_message, bad_field).

package edgechat

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Role is a member's role in a group.
type Role string

const (
	RoleOwner  Role = "owner"  // one per group; hands over with HandGroupOver
	RoleAdmin  Role = "admin"  // adds and removes members
	RoleMember Role = "member" // sends and reads
)

// GroupMember is one member as GroupInfo shows them.
type GroupMember struct {
	User   string `json:"user"`
	Role   Role   `json:"role"`
	Joined int64  `json:"joined"` // the group_seq of their join: they read from here on
	Read   int64  `json:"read"`   // they read the group up to this group_seq
}

// GroupInfo is a group's members (owner, admins, members) and its head,
// the highest group_seq of its log.
type GroupInfo struct {
	Group   string        `json:"group"`
	Head    int64         `json:"head"`
	Members []GroupMember `json:"members"`
}

// GroupSent is a stored group message: its id and group_seq. Duplicate:
// a send with the same cmid stored it before (a retry; nothing new).
type GroupSent struct {
	ID        string `json:"id"`
	GroupSeq  int64  `json:"group_seq"`
	Duplicate bool   `json:"duplicate"`
}

// GroupEntry is one entry of a group's history: a message ("message", Body
// as members got it) or a membership change ("change").
type GroupEntry struct {
	GroupSeq int64          `json:"group_seq"`
	Kind     string         `json:"kind"`
	MID      string         `json:"mid"`
	Body     map[string]any `json:"body"`
}

// GroupPage is a page of a group's history, newest first. Next is the
// before of the next page, 0 when there is none.
type GroupPage struct {
	Items []GroupEntry
	Next  int64
}

// groupPath is /api/groups/{group} and the rest, each id escaped.
func groupPath(group string, rest ...string) string {
	p := "/api/groups/" + url.PathEscape(group)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// groupCall makes a group call; no Idempotency-Key (the worker takes none
// here: a send's retry is made safe by its cmid, a retried change answers
// ErrConflict if the first attempt went through).
func (c *Client) groupCall(ctx context.Context, method, path string, body, out any) error {
	return c.call(ctx, method, path, body, []Option{noKey}, nil, out)
}

// CreateGroup creates a group owned by owner with members (besides the
// owner; at most GROUP_MAX_MEMBERS in all) and returns its id: group if
// not "" (g and 1 to 32 of lowercase letters, digits, _ and -; ErrConflict
// with Code group_exists if taken), else one the worker makes up.
func (c *Client) CreateGroup(ctx context.Context, owner string, members []string, group string) (string, error) {
	ids := make([]any, len(members))
	for i, m := range members {
		ids[i] = wireID(m)
	}
	body := map[string]any{"owner": wireID(owner), "members": ids}
	if group != "" {
		body["group"] = group
	}
	var out struct {
		Group string `json:"group"`
	}
	err := c.groupCall(ctx, http.MethodPost, "/api/groups", body, &out)
	return out.Group, err
}

// AddGroupMember adds user to group as role (RoleMember if ""); returns
// the group_seq of the change.
func (c *Client) AddGroupMember(ctx context.Context, group, user string, role Role) (int64, error) {
	body := map[string]any{"user": wireID(user)}
	if role != "" {
		body["role"] = role
	}
	return c.groupChange(ctx, http.MethodPost, groupPath(group, "members"), body)
}

// RemoveGroupMember removes user from group (never the owner: ErrConflict
// with Code cannot_remove_owner); returns the group_seq of the change.
func (c *Client) RemoveGroupMember(ctx context.Context, group, user string) (int64, error) {
	return c.groupChange(ctx, http.MethodDelete, groupPath(group, "members", user), nil)
}

// SetGroupRole makes user an admin or a member (RoleAdmin, RoleMember;
// any other is a *BadRequestError with Code invalid_role); returns the
// group_seq of the change.
func (c *Client) SetGroupRole(ctx context.Context, group, user string, role Role) (int64, error) {
	return c.groupChange(ctx, http.MethodPut, groupPath(group, "members", user), map[string]any{"role": role})
}

// HandGroupOver makes the member to the group's owner (the owner becomes
// an admin); returns the group_seq of the change.
func (c *Client) HandGroupOver(ctx context.Context, group, to string) (int64, error) {
	return c.groupChange(ctx, http.MethodPut, groupPath(group, "owner"), map[string]any{"user": wireID(to)})
}

func (c *Client) groupChange(ctx context.Context, method, path string, body any) (int64, error) {
	var out struct {
		GroupSeq int64 `json:"group_seq"`
	}
	err := c.groupCall(ctx, method, path, body, &out)
	return out.GroupSeq, err
}

// GroupInfo returns the group's members and head.
func (c *Client) GroupInfo(ctx context.Context, group string) (*GroupInfo, error) {
	var out GroupInfo
	if err := c.groupCall(ctx, http.MethodGet, groupPath(group), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendGroupMessage sends message (with extra fields, which may be nil) to
// group on behalf of its member from; every member gets it in their log.
// Its cmid is the call's WithIdempotencyKey (1 to 64 characters) or a
// random one, the same on each retry: a send made again with it within a
// day stores nothing new and answers the same id (Duplicate true).
func (c *Client) SendGroupMessage(ctx context.Context, group, from, message string, extra map[string]any, opts ...Option) (GroupSent, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cmid := o.key
	if cmid == "" {
		var err error
		if cmid, err = newKey(); err != nil {
			return GroupSent{}, err
		}
	}
	body := with(extra, "message", message, "fromUser", wireID(from), "cmid", cmid)
	var out GroupSent
	err := c.groupCall(ctx, http.MethodPost, groupPath(group, "messages"), body, &out)
	return out, err
}

// GroupHistory returns a page of the group's whole history, newest first:
// up to limit entries (1 to 200; 0 for the worker's 50) before the
// group_seq before (0 for the newest).
func (c *Client) GroupHistory(ctx context.Context, group string, before int64, limit int) (*GroupPage, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := groupPath(group, "messages")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Items []GroupEntry `json:"items"`
		Next  *int64       `json:"next"`
	}
	if err := c.groupCall(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	page := &GroupPage{Items: out.Items}
	if out.Next != nil {
		page.Next = *out.Next
	}
	return page, nil
}
