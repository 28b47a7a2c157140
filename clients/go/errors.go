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
	// deleted already; for Block the user blocks BLOCKS_MAX peers already.
	ErrConflict = errors.New("edgechat: conflict")
)

// Error is an answer other than 200 that no more specific type covers. It
// matches the sentinel of its status with errors.Is (401 ErrUnauthorized,
// 404 ErrNotFound, 409 ErrConflict, 503 ErrUnavailable).
type Error struct {
	Status  int
	Message string // the answer's "error", or its raw body
}

func (e *Error) Error() string {
	return fmt.Sprintf("edgechat: %d: %s", e.Status, e.Message)
}

func (e *Error) Is(target error) bool {
	return target == map[int]error{401: ErrUnauthorized, 404: ErrNotFound, 409: ErrConflict, 503: ErrUnavailable}[e.Status]
}

// BadRequestError: 400, the body (or the Idempotency-Key) was refused and
// nothing of the call was stored. Field names the field at fault ("uid",
// "toUser", "message", …; empty when none), Index the message of a batch
// (-1 for a call of one message, or the body as a whole). Not retried.
type BadRequestError struct {
	Message string
	Field   string
	Index   int
}

func (e *BadRequestError) Error() string { return "edgechat: bad request: " + e.Message }

// TooLargeError: 413, the body is over BODY_MAX_BYTES or the batch over
// API_MAX_BATCH; nothing was stored. Split the call. Not retried.
type TooLargeError struct{ Message string }

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
// (503 when any failure may pass, 507 when every one was RecipientFull).
// IDs holds the id of each stored message and "" for the others; Errors
// the reason of each one not stored (ErrUnavailable or a
// *RecipientFullError) and nil for the others. Calling again with
// WithIdempotencyKey(Key) is safe: the stored ones are answered with the
// same ids and stored nothing new. It unwraps to ErrUnavailable if any
// failure may pass, else to the first *RecipientFullError, so errors.Is
// and errors.As see why the call failed.
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
