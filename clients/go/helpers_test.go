package edgechat_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"edgechat"
)

// The workers come from clients/go/test.sh (npm test): EDGE_CHAT_URL runs
// with the default limits, EDGE_CHAT_TIGHT_URL with small ones (see
// workers.mjs). Both use the harness's secrets.
const (
	apiKey    = "test-api-key"
	jwtSecret = "test-jwt-secret"
)

// workerURL is the worker named by env, or skips the test.
func workerURL(t *testing.T, env string) string {
	t.Helper()
	url := os.Getenv(env)
	if url == "" {
		t.Skipf("%s is not set: run clients/go/test.sh, which starts the worker", env)
	}
	return url
}

// fast retries, so that tests of retries take milliseconds.
var fast = edgechat.RetryPolicy{Attempts: 5, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, Budget: 10 * time.Second}

// proxy stands between a client and the worker, counting requests and
// keeping their Idempotency-Keys. plan[i] says what befalls request i:
// "503" is answered 503 and never reaches the worker ("partial": a 503
// naming the second of two messages not stored); "lost" reaches it but
// its answer is replaced by a 503 (the answer lost); "cut" reaches it but
// the connection is closed unanswered. Past the plan, requests go through.
type proxy struct {
	target string
	plan   []string
	mu     sync.Mutex
	keys   []string
}

func newProxy(t *testing.T, target string, plan ...string) (*proxy, *edgechat.Client) {
	p := &proxy{target: target, plan: plan}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	c := edgechat.New(srv.URL, apiKey)
	c.Retry = fast
	return p, c
}

func (p *proxy) requests() int { return len(p.sent()) }

// sent is the Idempotency-Key of each request so far.
func (p *proxy) sent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.keys...)
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	n := len(p.keys)
	p.keys = append(p.keys, r.Header.Get("Idempotency-Key"))
	p.mu.Unlock()
	action := ""
	if n < len(p.plan) {
		action = p.plan[n]
	}
	switch action {
	case "503":
		http.Error(w, `{"error":"try again"}`, http.StatusServiceUnavailable)
		return
	case "partial": // as the worker answers a batch of two of which the second was not stored
		http.Error(w, `{"error":"retry those with a null id","ids":["a",null],"errors":[null,"unavailable"]}`, http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	req.Header.Del("Accept-Encoding") // so that this transport unzips, and the client gets plain JSON
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	switch action {
	case "lost":
		http.Error(w, `{"error":"lost"}`, http.StatusServiceUnavailable)
	case "cut":
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	default:
		w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
		w.WriteHeader(res.StatusCode)
		w.Write(answer)
	}
}

// user is a user id no other test (or earlier run on the same worker) has.
func user(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// numericUser is a user id of digits, which the worker writes as a JSON number.
func numericUser() string {
	var b [8]byte
	rand.Read(b[:])
	return strconv.FormatUint(1e12+binary.LittleEndian.Uint64(b[:])%1e12, 10)
}

// token is a client token of uid: an HS256 JWT with the harness's secret.
func token(uid string) string {
	enc := base64.RawURLEncoding
	claims, _ := json.Marshal(map[string]any{"sub": uid, "exp": time.Now().Add(time.Hour).Unix()})
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(jwtSecret))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// asUser is GET path on the worker as uid, decoded into out.
func asUser(t *testing.T, base, uid, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token(uid))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s as %s: %v", path, uid, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s as %s: %d %s", path, uid, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("GET %s as %s: %v", path, uid, err)
	}
}

// history is uid's /ws/history page, newest first.
type history struct {
	Sys, Usr []map[string]any
}

func historyOf(t *testing.T, base, uid string) history {
	t.Helper()
	var h history
	asUser(t, base, uid, "/ws/history", &h)
	return h
}

func ids(items []map[string]any) []string {
	out := []string{}
	for _, m := range items {
		s, _ := m["id"].(string)
		out = append(out, s)
	}
	return out
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
