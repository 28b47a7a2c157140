package edgechat

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrUnauthorized: 401, the API key is missing or wrong. Not retried.
	ErrUnauthorized = errors.New("edgechat: unauthorized (check the API key)")
	// ErrUnavailable: 503, or one message of a call that was not stored for
	// a passing reason. Retried by the client; still there once its retries
	// are spent. Calling again with the same key is safe.
	ErrUnavailable = errors.New("edgechat: unavailable; nothing of it was stored, retry")
	// ErrNotFound: 404, for EditMessage and DeleteMessage no chat of that
	// user's with that id (unknown, or older than the log keeps).
	ErrNotFound = errors.New("edgechat: not found")
	// ErrConflict: 409, for EditMessage and DeleteMessage the message was
	// deleted already; for Block the user blocks BLOCKS_MAX peers already;
	// for the group calls the change is not possible or already made
	// (Error.Code: group_exists, already_member, group_full, unchanged, …).
	ErrConflict = errors.New("edgechat: conflict")
	// ErrForbidden: 403, for a group call the user named is no member
	// (Error.Code not_member) or their role may not (not_allowed).
	ErrForbidden = errors.New("edgechat: forbidden")
	// ErrKeyReused: 422 idempotency_key_reused, the Idempotency-Key came
	// before with other messages; nothing of them was stored. Use a new key
	// for a new call. Not retried.
	ErrKeyReused = errors.New("edgechat: idempotency key reused with a different request")
)

// Error is an answer other than 2xx that no more specific type covers. It
// matches the sentinel of its status with errors.Is (401 ErrUnauthorized,
// 403 ErrForbidden, 404 ErrNotFound, 409 ErrConflict, 422 ErrKeyReused,
// 503 ErrUnavailable).
type Error struct {
	Status  int
	Code    string // the answer's stable "code" ("no_such_group", "unavailable", …); "" when it has none
	Message string // the answer's "error", or its raw body
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("edgechat: %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("edgechat: %d: %s", e.Status, e.Message)
}

func (e *Error) Is(target error) bool {
	sentinels := map[int]error{401: ErrUnauthorized, 403: ErrForbidden, 404: ErrNotFound, 409: ErrConflict, 422: ErrKeyReused, 503: ErrUnavailable}
	return target == sentinels[e.Status]
}

// BadRequestError: 400, the body (or the Idempotency-Key) was refused and
// nothing of the call was stored. Code is the worker's stable code
// ("bad_json", "bad_field", "empty_message", "invalid_role"), Field the
// field at fault ("uid", "toUser", "message", "Idempotency-Key", …; empty
// when none), Index the message of a batch (-1 for a call of one message,
// or the body as a whole). Not retried.
type BadRequestError struct {
	Message string
	Code    string
	Field   string
	Index   int
}

func (e *BadRequestError) Error() string { return "edgechat: bad request: " + e.Message }

// TooLargeError: 413, the body is over BODY_MAX_BYTES (Code
// "body_too_large") or the batch over API_MAX_BATCH ("batch_too_large");
// Limit is the limit in bytes or messages. Nothing was stored. Split the
// call. Not retried.
type TooLargeError struct {
	Message string
	Code    string
	Limit   int
}

func (e *TooLargeError) Error() string { return "edgechat: too large: " + e.Message }

// RecipientFullError: 507, or one message of a call: the recipient's
// offline queue is at QUEUE_MAX, so nothing was stored for them. Sending
// again helps only once they connect (or queued messages expire), so it
// is not retried.
type RecipientFullError struct {
	User    string // the recipient
	Message string
}

func (e *RecipientFullError) Error() string {
	return fmt.Sprintf("edgechat: recipient %s's offline queue is full (QUEUE_MAX)", e.User)
}

// PartialError: a batch of which some messages were stored and some not
// (503 when any failure may pass, 507 when every one was RecipientFull,
// 422 when the key was reused). IDs holds the id of each stored message
// and "" for the others; Errors the reason of each one not stored
// (ErrUnavailable, a *RecipientFullError or ErrKeyReused) and nil for the
// others. Calling again with WithIdempotencyKey(Key) is safe: the stored
// ones are answered with the same ids and stored nothing new. It unwraps
// to ErrKeyReused if the key was reused (no retry helps), else to
// ErrUnavailable if any failure may pass, else to the first
// *RecipientFullError, so errors.Is and errors.As see why the call failed.
type PartialError struct {
	Status  int
	Message string
	Key     string // the call's Idempotency-Key
	IDs     []string
	Errors  []error
}

func (e *PartialError) Error() string {
	var why []string
	for i, err := range e.Errors {
		if err != nil {
			why = append(why, fmt.Sprintf("%d: %v", i, err))
		}
	}
	return fmt.Sprintf("edgechat: %d of %d not stored (%s)", len(why), len(e.IDs), strings.Join(why, "; "))
}

func (e *PartialError) Unwrap() error {
	for _, err := range e.Errors {
		if errors.Is(err, ErrKeyReused) {
			return err
		}
	}
	var first error
	for _, err := range e.Errors {
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}
