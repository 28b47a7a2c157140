// Package edgechat is a client of edge-chat's backend HTTP API: system
// messages and chats sent on a user's behalf (one or many per call), the
// moderation calls (edit, delete, block) and group conversations (create,
// members and roles, info, send, history). Standard library only.
//
// Every send carries an Idempotency-Key (random unless given with
// WithIdempotencyKey) that its retries reuse, so a retry never stores a
// message twice. 503s and network errors are retried with exponential
// backoff and jitter (RetryPolicy); other failures are typed errors.
package edgechat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client calls the backend API of one deployment. Safe for concurrent use.
type Client struct {
	BaseURL    string       // the worker's origin, e.g. "https://chat.example.com"
	APIKey     string       // the worker's API_KEY secret
	HTTPClient *http.Client // nil: http.DefaultClient
	Retry      RetryPolicy  // a zero field takes DefaultRetry's value
}

// New returns a Client with the default HTTP client and retry policy.
func New(baseURL, apiKey string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), APIKey: apiKey}
}

// RetryPolicy bounds the retries of one call. The n-th retry waits about
// Base·2ⁿ⁻¹ (at most Max), half of it random, so that many clients
// refused at once do not come back at once.
type RetryPolicy struct {
	Attempts int           // most requests one call makes (1: no retry)
	Base     time.Duration // wait before the first retry
	Max      time.Duration // longest wait between two attempts
	Budget   time.Duration // longest one call takes, retries included
}

// DefaultRetry: 5 attempts within 30 s.
var DefaultRetry = RetryPolicy{Attempts: 5, Base: 250 * time.Millisecond, Max: 5 * time.Second, Budget: 30 * time.Second}

func (p RetryPolicy) orDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultRetry.Attempts
	}
	if p.Base <= 0 {
		p.Base = DefaultRetry.Base
	}
	if p.Max <= 0 {
		p.Max = DefaultRetry.Max
	}
	if p.Budget <= 0 {
		p.Budget = DefaultRetry.Budget
	}
	return p
}

// wait is the pause before retry n (0 for the first).
func (p RetryPolicy) wait(n int) time.Duration {
	d := p.Base
	for ; n > 0 && d < p.Max; n-- {
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	return d/2 + jitter(d/2)
}

// Option changes one call.
type Option func(*options)

type options struct {
	key   string
	noKey bool
}

func noKey(o *options) { o.noKey = true }

// WithIdempotencyKey sends the call with key (1 to 128 characters, no
// control character) rather than a random one: a call made again later with
// the same key and the same messages (a job re-run after a crash, a
// PartialError's Key) stores nothing new and is answered the same ids. The
// key is bound to the messages it first came with: the same key with other
// messages fails with ErrKeyReused and stores nothing. For
// SendGroupMessage the key is the message's cmid (1 to 64 characters).
func WithIdempotencyKey(key string) Option { return func(o *options) { o.key = key } }

// SysMsg is a system message for UID: Fields are delivered as they are,
// with "uid" set (and "time" and "id" added when absent).
type SysMsg struct {
	UID    string
	Fields map[string]any
}

// UsrMsg is a chat sent on From's behalf to To, delivered like one from a
// socket; Extra fields are carried along ("type" is dropped).
type UsrMsg struct {
	From, To, Message string
	Extra             map[string]any
}

// SendSysMsg sends one system message to uid and returns its id.
func (c *Client) SendSysMsg(ctx context.Context, uid string, msg map[string]any, opts ...Option) (string, error) {
	return c.sendOne(ctx, "/api/sys-msg", SysMsg{uid, msg}.item(), uid, opts)
}

// SendSysMsgs sends many system messages in one call (at most
// API_MAX_BATCH, 1000), in order per recipient. ids[i] is the id of
// msgs[i], "" for one not stored; on a partial failure err is a
// *PartialError.
func (c *Client) SendSysMsgs(ctx context.Context, msgs []SysMsg, opts ...Option) (ids []string, err error) {
	return sendMany(c, ctx, "/api/sys-msg", msgs, func(m SysMsg) (map[string]any, string) { return m.item(), m.UID }, opts)
}

// SendUsrMsg sends message from `from` to `to` as a chat (with extra
// fields, which may be nil) and returns its id. It is in both users'
// history; a block never holds it back.
func (c *Client) SendUsrMsg(ctx context.Context, from, to, message string, extra map[string]any, opts ...Option) (string, error) {
	return c.sendOne(ctx, "/api/usr-msg", UsrMsg{from, to, message, extra}.item(), to, opts)
}

// SendUsrMsgs sends many chats in one call, as SendSysMsgs does, in order
// per sender (chats of two senders are stored in parallel).
func (c *Client) SendUsrMsgs(ctx context.Context, msgs []UsrMsg, opts ...Option) (ids []string, err error) {
	return sendMany(c, ctx, "/api/usr-msg", msgs, func(m UsrMsg) (map[string]any, string) { return m.item(), m.To }, opts)
}

// EditMessage replaces the body of user's chat mid, for everyone and at
// any age the log still holds (moderation: no edit window), with message
// and extra fields (may be nil); returns the id of the edit.
func (c *Client) EditMessage(ctx context.Context, user, mid, message string, extra map[string]any, opts ...Option) (string, error) {
	body := map[string]any{"user": user, "mid": mid, "body": with(extra, "message", message)}
	return c.moderate(ctx, "/api/edit", body, opts)
}

// DeleteMessage deletes user's chat mid for everyone (ErrConflict if it
// was deleted already); returns the id of the delete.
func (c *Client) DeleteMessage(ctx context.Context, user, mid string, opts ...Option) (string, error) {
	return c.moderate(ctx, "/api/delete", map[string]any{"user": user, "mid": mid}, opts)
}

// Block blocks (or with blocked false unblocks) peer on user's behalf;
// user's devices learn it at once. Repeating it changes nothing.
func (c *Client) Block(ctx context.Context, user, peer string, blocked bool) error {
	var out struct{}
	// No Idempotency-Key: a block is idempotent as it is.
	return c.post(ctx, "/api/blocks", map[string]any{"user": user, "peer": peer, "blocked": blocked}, []Option{noKey}, nil, &out)
}

func (m SysMsg) item() map[string]any { return with(m.Fields, "uid", wireID(m.UID)) }

func (m UsrMsg) item() map[string]any {
	return with(m.Extra, "fromUser", m.From, "toUser", m.To, "message", m.Message)
}

// with copies fields (the caller's map stays as it was) and sets pairs of
// key and value over them.
func with(fields map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(fields)+len(kv)/2)
	for k, v := range fields {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// wireID writes a user id as the worker itself does: digits (no leading
// zero, below 2^53) as a JSON number, anything else as a string. System
// messages are delivered as they are, and the legacy front end compares
// uids with === against numbers, as the original backend sent them.
func wireID(id string) any {
	if n, err := strconv.ParseUint(id, 10, 64); err == nil && n < 1<<53 && strconv.FormatUint(n, 10) == id {
		return json.Number(id)
	}
	return id
}

// sendOne sends one message as a JSON object, answered {"id"}.
func (c *Client) sendOne(ctx context.Context, path string, item map[string]any, to string, opts []Option) (string, error) {
	var out struct{ ID string }
	err := c.post(ctx, path, item, opts, []string{to}, &out)
	// One message: its own reason is the call's error.
	if pe, ok := err.(*PartialError); ok && len(pe.Errors) == 1 {
		return "", pe.Errors[0]
	}
	return out.ID, err
}

// sendMany sends msgs as a JSON array, answered {"ids"}; item makes the
// body of one and names its recipient.
func sendMany[M any](c *Client, ctx context.Context, path string, msgs []M, item func(M) (map[string]any, string), opts []Option) ([]string, error) {
	if len(msgs) == 0 {
		return nil, nil // the worker refuses an empty array; nothing to send is no error
	}
	items, to := make([]map[string]any, len(msgs)), make([]string, len(msgs))
	for i, m := range msgs {
		items[i], to[i] = item(m)
	}
	var out struct{ IDs []string }
	err := c.post(ctx, path, items, opts, to, &out)
	if pe, ok := err.(*PartialError); ok {
		return pe.IDs, err
	}
	return out.IDs, err
}

func (c *Client) moderate(ctx context.Context, path string, body any, opts []Option) (string, error) {
	var out struct{ ID string }
	err := c.post(ctx, path, body, opts, nil, &out)
	return out.ID, err
}

// post sends body to path and decodes a 200 into out. Every attempt
// carries the call's Idempotency-Key. 503s and network errors are retried;
// then the error of the last answer (or the network error if none came) is
// returned. to names each message's recipient, for RecipientFullError.
func (c *Client) post(ctx context.Context, path string, body any, opts []Option, to []string, out any) error {
	return c.call(ctx, http.MethodPost, path, body, opts, to, out)
}

// call is post with any method; a nil body sends none. Any 2xx is a
// success (201 for a created group; 204 has nothing to decode).
func (c *Client) call(ctx context.Context, method, path string, body any, opts []Option, to []string, out any) error {
	var payload []byte
	var err error
	if body != nil {
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("edgechat: encoding the body: %w", err)
		}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !o.noKey && o.key == "" {
		if o.key, err = newKey(); err != nil {
			return err
		}
	}
	p := c.Retry.orDefaults()
	ctx, cancel := context.WithTimeout(ctx, p.Budget)
	defer cancel()
	var last error
	for n := 0; ; n++ {
		var reader io.Reader
		if payload != nil {
			reader = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, reader)
		if err != nil {
			return err // a bad BaseURL: no retry helps
		}
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if o.key != "" {
			req.Header.Set("Idempotency-Key", o.key)
		}
		status, answer, after, err := c.do(req)
		switch {
		case err != nil && last == nil:
			last = fmt.Errorf("edgechat: %w", err)
		case err == nil && status/100 == 2:
			if status == http.StatusNoContent || out == nil {
				return nil
			}
			if err := json.Unmarshal(answer, out); err != nil {
				return fmt.Errorf("edgechat: reading the answer: %w", err)
			}
			return nil
		case err == nil:
			last = errorOf(status, answer, o.key, to)
		}
		retry := err != nil || status == http.StatusServiceUnavailable
		// The worker's Retry-After (1 s on every 503), within the policy's Max.
		wait := p.wait(n)
		if after > wait {
			wait = shorter(after, p.Max)
		}
		if !retry || n+1 >= p.Attempts || !sleep(ctx, wait) {
			return last
		}
	}
}

// do makes one request and reads its whole answer, with the wait its
// Retry-After header asks for (0 without one).
func (c *Client) do(req *http.Request) (int, []byte, time.Duration, error) {
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer res.Body.Close()
	var after time.Duration
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
		after = time.Duration(s) * time.Second
	}
	answer, err := io.ReadAll(res.Body)
	return res.StatusCode, answer, after, err
}

func shorter(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// errorOf is the error of an answer other than 200.
func errorOf(status int, answer []byte, key string, to []string) error {
	var a struct {
		Error  string
		Code   string
		Field  string
		Index  *int
		Limit  int
		IDs    []*string
		Errors []*string
	}
	if json.Unmarshal(answer, &a) != nil || a.Error == "" {
		a.Error = strings.TrimSpace(string(answer)) // a proxy's page, say
	}
	switch {
	case status == http.StatusBadRequest:
		e := &BadRequestError{Message: a.Error, Code: a.Code, Field: a.Field, Index: -1}
		if a.Index != nil {
			e.Index = *a.Index
		}
		return e
	case status == http.StatusRequestEntityTooLarge:
		return &TooLargeError{Message: a.Error, Code: a.Code, Limit: a.Limit}
	case len(a.IDs) > 0 && len(a.IDs) == len(a.Errors) && len(a.IDs) == len(to):
		e := &PartialError{Status: status, Message: a.Error, Key: key, IDs: make([]string, len(a.IDs)), Errors: make([]error, len(a.IDs))}
		for i, id := range a.IDs {
			if id != nil {
				e.IDs[i] = *id
			}
			if a.Errors[i] != nil {
				e.Errors[i] = itemError(*a.Errors[i], to[i], a.Error)
			}
		}
		return e
	case status == http.StatusInsufficientStorage:
		// A call of one message is refused in its own shape ({"id": null}).
		e := &RecipientFullError{Message: a.Error}
		if len(to) == 1 {
			e.User = to[0]
		}
		return e
	}
	return &Error{Status: status, Code: a.Code, Message: a.Error}
}

// itemError is why one message of a call was not stored, as the answer's errors[i] says.
func itemError(reason, to, message string) error {
	switch reason {
	case "unavailable":
		return ErrUnavailable
	case "recipient_full":
		return &RecipientFullError{User: to, Message: message}
	case "idempotency_key_reused":
		return ErrKeyReused
	}
	return fmt.Errorf("edgechat: not stored: %s", reason)
}

// newKey is a random Idempotency-Key: 128 bits, so no two calls share one.
func newKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("edgechat: no randomness for an idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// jitter is a random duration from 0 to d, from crypto/rand: math/rand's
// global source is not seeded before Go 1.20, so every process would wait
// the same.
func jitter(d time.Duration) time.Duration {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil || d <= 0 {
		return d
	}
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(d+1))
}

// sleep waits d unless ctx ends first, or would end before d is up; false
// then, since no attempt could follow.
func sleep(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
