package httpserver_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/httpserver"
)

const (
	testIssuer   = "https://idp.test/"
	testAudience = "orderflow"
	testAPIKey   = "k3y-0123456789abcdef"
	testSecret   = "an-hs256-secret-of-at-least-32-bytes!"
)

// Keys are made once: an RSA key takes a while under -race.
var (
	rsaKey   = sync.OnceValue(func() *rsa.PrivateKey { return orPanic(rsa.GenerateKey(rand.Reader, 2048)) })
	otherRSA = sync.OnceValue(func() *rsa.PrivateKey { return orPanic(rsa.GenerateKey(rand.Reader, 2048)) })
	jwksRSA  = sync.OnceValue(func() *rsa.PrivateKey { return orPanic(rsa.GenerateKey(rand.Reader, 2048)) })
	ecKey    = sync.OnceValue(func() *ecdsa.PrivateKey { return orPanic(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
)

func orPanic[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func envOf(vars map[string]string) *config.Env {
	return config.FromLookup(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ecJWKS is a JWKS document holding ecKey's public key as kid "ec-1",
// jwksRSA's as "rsa-1" for RS256 only, and a symmetric key to pass over.
func ecJWKS(t *testing.T) []byte {
	t.Helper()
	pt, err := ecKey().PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	rk := jwksRSA().PublicKey
	return fmt.Appendf(nil, `{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","use":"sig","kid":"ec-1","crv":"P-256","x":%q,"y":%q},`+
		`{"kty":"RSA","kid":"rsa-1","alg":"RS256","n":%q,"e":"AQAB"}]}`,
		enc(pt[1:33]), enc(pt[33:]), enc(rk.N.Bytes()))
}

// fullEnv turns auth on with every kind of credential.
func fullEnv(t *testing.T) map[string]string {
	return map[string]string{
		"HTTP_AUTH":          "on",
		"HTTP_API_KEYS":      "another-key-of-16+," + testAPIKey,
		"HTTP_JWT_KEY_FILE":  writeFile(t, "rsa.pem", pemPublic(t, &rsaKey().PublicKey)),
		"HTTP_JWT_JWKS_FILE": writeFile(t, "keys.json", ecJWKS(t)),
		"HTTP_JWT_ISSUER":    testIssuer,
		"HTTP_JWT_AUDIENCE":  testAudience,
	}
}

func authFrom(t *testing.T, vars map[string]string) httpserver.Auth {
	t.Helper()
	e := envOf(vars)
	a := httpserver.AuthFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	return a
}

// authServer serves the shared router (/healthz, /readyz, /metrics) with
// GET and POST /things behind a's middleware, wrapped around the router
// as Run does; calls counts the requests that reached a handler.
func authServer(t *testing.T, a httpserver.Auth) (url string, calls *atomic.Int32) {
	calls = new(atomic.Int32)
	r := httpserver.NewRouter(prometheus.NewRegistry())
	r.Get("/things", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		httpserver.WriteJSON(w, http.StatusOK, []string{})
	})
	r.Post("/things", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		httpserver.WriteJSON(w, http.StatusCreated, map[string]string{"id": "1"})
	})
	srv := httptest.NewServer(a.Middleware(r))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

type answer struct {
	status  int
	header  http.Header
	problem httpserver.Problem
}

func call(t *testing.T, method, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if resp.Header.Get("Content-Type") == httpserver.ContentTypeProblem && method != http.MethodHead {
		if err := json.Unmarshal(b, &a.problem); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return a
}

// claims are a valid token's, changed by edits.
func claims(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "svc-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": "orders:read orderflow:write"}
	for _, e := range edits {
		e(c)
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// noneToken is an unsigned token (alg "none"), which must never pass.
func noneToken(c jwt.MapClaims) string {
	enc := base64.RawURLEncoding.EncodeToString
	body, _ := json.Marshal(c)
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(body) + "."
}

func TestAuthOffLetsEverythingThrough(t *testing.T) {
	url, calls := authServer(t, authFrom(t, map[string]string{"HTTP_API_KEYS": testAPIKey}))
	if a := call(t, "POST", url+"/things"); a.status != http.StatusCreated {
		t.Errorf("POST without credentials: %d %+v", a.status, a.problem)
	}
	if a := call(t, "GET", url+"/things"); a.status != http.StatusOK {
		t.Errorf("GET: %d", a.status)
	}
	if a := call(t, "GET", url+"/metrics"); a.status != http.StatusOK {
		t.Errorf("/metrics: %d", a.status)
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls reached the handlers, want 2", calls.Load())
	}
}

func TestAuthWrites(t *testing.T) {
	var logs bytes.Buffer
	auth := authFrom(t, fullEnv(t)).WithLog(slog.New(slog.NewTextHandler(&logs, nil)))
	url, calls := authServer(t, auth)
	rs := func(edits ...func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(edits...), "")
	}
	rsaPEM := pemPublic(t, &rsaKey().PublicKey)
	const plain, invalid = `Bearer realm="orderflow"`, `Bearer realm="orderflow", error="invalid_token"`
	tests := []struct {
		name      string
		header    []string
		status    int
		challenge string
	}{
		{"no credentials", nil, 401, plain},
		{"not a bearer token", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, plain},
		{"garbage token", bearer("not-a-jwt"), 401, invalid},
		{"empty bearer", []string{"Authorization", "Bearer "}, 401, invalid},
		{"expired", bearer(rs(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })), 401, invalid},
		{"expired within the leeway", bearer(rs(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() })), 201, ""},
		{"not yet valid", bearer(rs(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() })), 401, invalid},
		{"no exp", bearer(rs(func(c jwt.MapClaims) { delete(c, "exp") })), 401, invalid},
		{"wrong issuer", bearer(rs(func(c jwt.MapClaims) { c["iss"] = "https://evil.test/" })), 401, invalid},
		{"no issuer", bearer(rs(func(c jwt.MapClaims) { delete(c, "iss") })), 401, invalid},
		{"wrong audience", bearer(rs(func(c jwt.MapClaims) { c["aud"] = []string{"billing"} })), 401, invalid},
		{"alg none", bearer(noneToken(claims())), 401, invalid},
		{"HS256 signed with the RSA public key", bearer(sign(t, jwt.SigningMethodHS256, rsaPEM, claims(), "")), 401, invalid},
		{"signed by another RSA key", bearer(sign(t, jwt.SigningMethodRS256, otherRSA(), claims(), "")), 401, invalid},
		{"RS256", bearer(rs()), 201, ""},
		{"PS384", bearer(sign(t, jwt.SigningMethodPS384, rsaKey(), claims(), "")), 201, ""},
		{"lowercase bearer", []string{"Authorization", "bearer " + rs()}, 201, ""},
		{"ES256 from the JWKS", bearer(sign(t, jwt.SigningMethodES256, ecKey(), claims(), "ec-1")), 201, ""},
		{"RS256 from the JWKS", bearer(sign(t, jwt.SigningMethodRS256, jwksRSA(), claims(), "rsa-1")), 201, ""},
		{"PS256 under a JWKS key for RS256 only", bearer(sign(t, jwt.SigningMethodPS256, jwksRSA(), claims(), "rsa-1")), 401, invalid},
		{"ES256 with another kid", bearer(sign(t, jwt.SigningMethodES256, ecKey(), claims(), "ec-2")), 401, invalid},
		{"ES384 under the P-256 key's kid", bearer(sign(t, jwt.SigningMethodES384, orPanic(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)), claims(), "ec-1")), 401, invalid},
		{"scope as a scp list", bearer(rs(func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = []string{"orderflow:write"} })), 201, ""},
		{"API key", []string{"X-API-Key", testAPIKey}, 201, ""},
		{"wrong API key", []string{"X-API-Key", testAPIKey + "x"}, 401, invalid},
		{"two credentials", append([]string{"X-API-Key", testAPIKey}, bearer(rs())...), 401, `Bearer realm="orderflow", error="invalid_request"`},
		{"no write scope", bearer(rs(func(c jwt.MapClaims) { c["scope"] = "orders:read" })), 403,
			`Bearer realm="orderflow", error="insufficient_scope", scope="orderflow:write"`},
		{"scope only as a prefix", bearer(rs(func(c jwt.MapClaims) { c["scope"] = "orderflow:writer" })), 403,
			`Bearer realm="orderflow", error="insufficient_scope", scope="orderflow:write"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			logs.Reset()
			a := call(t, "POST", url+"/things", tt.header...)
			if a.status != tt.status {
				t.Fatalf("got %d %+v, want %d", a.status, a.problem, tt.status)
			}
			if got := a.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if tt.status < 400 {
				if calls.Load() != before+1 {
					t.Error("the handler was not called")
				}
				return
			}
			if calls.Load() != before {
				t.Error("a refused request reached the handler")
			}
			want := httpserver.ProblemUnauthenticated
			if tt.status == 403 {
				want = httpserver.ProblemForbidden
			}
			if a.problem.Type != want || a.problem.Status != tt.status || a.problem.Instance != "/things" {
				t.Errorf("problem %+v, want type %s", a.problem, want)
			}
			if a.header.Get("X-Correlation-ID") == "" {
				t.Error("no X-Correlation-ID on the refusal")
			}
			line := logs.String()
			if !strings.Contains(line, "request refused") || !strings.Contains(line, "reason=") {
				t.Errorf("log %q does not say why", line)
			}
			for i := 1; i < len(tt.header); i += 2 {
				cred := strings.TrimPrefix(tt.header[i], "Bearer ")
				if len(cred) > 8 && (strings.Contains(line, cred) || strings.Contains(a.problem.Detail, cred)) {
					t.Errorf("the credential is echoed: log %q, detail %q", line, a.problem.Detail)
				}
			}
		})
	}
}

func TestAuthHMACSecret(t *testing.T) {
	url, _ := authServer(t, authFrom(t, map[string]string{"HTTP_AUTH": "on", "HTTP_JWT_HMAC_SECRET": testSecret}))
	if a := call(t, "POST", url+"/things", bearer(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims(), ""))...); a.status != 201 {
		t.Errorf("HS256 with the secret: %d %+v", a.status, a.problem)
	}
	if a := call(t, "POST", url+"/things", bearer(sign(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), claims(), ""))...); a.status != 401 {
		t.Errorf("HS256 with another secret: %d", a.status)
	}
	// Only HS256: a longer HMAC or an RSA signature has no key here.
	if a := call(t, "POST", url+"/things", bearer(sign(t, jwt.SigningMethodHS512, []byte(testSecret), claims(), ""))...); a.status != 401 {
		t.Errorf("HS512: %d", a.status)
	}
	if a := call(t, "POST", url+"/things", bearer(sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), ""))...); a.status != 401 {
		t.Errorf("RS256 without an RSA key: %d", a.status)
	}
	if a := call(t, "POST", url+"/things", "X-API-Key", testAPIKey); a.status != 401 {
		t.Errorf("an API key where none is configured: %d", a.status)
	}
}

func TestAuthWriteScopeNone(t *testing.T) {
	vars := fullEnv(t)
	vars["HTTP_AUTH_WRITE_SCOPE"] = "none"
	url, _ := authServer(t, authFrom(t, vars))
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(func(c jwt.MapClaims) { delete(c, "scope") }), "")
	if a := call(t, "POST", url+"/things", bearer(tok)...); a.status != 201 {
		t.Errorf("got %d %+v", a.status, a.problem)
	}
}

func TestAuthReadsAndProbes(t *testing.T) {
	readOnly := func(t *testing.T) []string {
		return bearer(sign(t, jwt.SigningMethodRS256, rsaKey(), claims(func(c jwt.MapClaims) { c["scope"] = "orders:read" }), ""))
	}
	tests := []struct {
		reads, metrics string
		path           string
		header         func(*testing.T) []string
		want           int
	}{
		{"", "", "/things", nil, 200},
		{"required", "", "/things", nil, 401},
		{"required", "", "/things", readOnly, 200}, // reads need no scope
		{"required", "", "/things", func(*testing.T) []string { return []string{"X-API-Key", "wrong-key-0123456789"} }, 401},
		{"required", "required", "/healthz", nil, 200},
		{"required", "required", "/readyz", nil, 200},
		{"", "", "/metrics", nil, 200},
		{"required", "", "/metrics", nil, 200},
		{"", "required", "/metrics", nil, 401},
		{"", "required", "/metrics", func(*testing.T) []string { return []string{"X-API-Key", testAPIKey} }, 200},
		{"", "required", "/things", nil, 200},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("reads=%s,metrics=%s,%s", tt.reads, tt.metrics, tt.path), func(t *testing.T) {
			vars := fullEnv(t)
			vars["HTTP_AUTH_READS"], vars["HTTP_AUTH_METRICS"] = tt.reads, tt.metrics
			url, _ := authServer(t, authFrom(t, vars))
			var h []string
			if tt.header != nil {
				h = tt.header(t)
			}
			a := call(t, "GET", url+tt.path, h...)
			if a.status != tt.want {
				t.Errorf("got %d %+v, want %d", a.status, a.problem, tt.want)
			}
			if a.status == 401 && (a.header.Get("WWW-Authenticate") == "" || a.problem.Type != httpserver.ProblemUnauthenticated) {
				t.Errorf("401 without WWW-Authenticate or problem: %v %+v", a.header, a.problem)
			}
			// HEAD and OPTIONS read as GET does (the router answers them
			// 405, as no route serves them, but only once they pass).
			for _, m := range []string{"HEAD", "OPTIONS"} {
				if got := call(t, m, url+tt.path, h...).status; (got == 401) != (tt.want == 401) {
					t.Errorf("%s: got %d, want 401: %v", m, got, tt.want == 401)
				}
			}
		})
	}
}

// Inside the router, on a group of routes, the middleware works the same:
// the group's routes are covered and the rest is not.
func TestAuthOnARouteGroup(t *testing.T) {
	auth := authFrom(t, fullEnv(t))
	r := httpserver.NewRouter(prometheus.NewRegistry())
	r.Group(func(r chi.Router) {
		r.Use(auth.Middleware)
		r.Post("/things", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	a := call(t, "POST", srv.URL+"/things")
	if a.status != 401 || a.problem.Type != httpserver.ProblemUnauthenticated || a.header.Get("X-Correlation-ID") == "" {
		t.Errorf("got %d %+v %v", a.status, a.problem, a.header)
	}
	if a := call(t, "POST", srv.URL+"/things", "X-API-Key", testAPIKey); a.status != http.StatusNoContent {
		t.Errorf("with the key: %d", a.status)
	}
}

func TestAuthFromEnvRejects(t *testing.T) {
	rsaPath := writeFile(t, "rsa.pem", pemPublic(t, &rsaKey().PublicKey))
	small := orPanic(rsa.GenerateKey(rand.Reader, 1024))
	privDER := orPanic(x509.MarshalPKCS8PrivateKey(ecKey()))
	tests := []struct {
		name string
		vars map[string]string
		want string // the variable named and part of the reason
	}{
		{"on without credentials", map[string]string{"HTTP_AUTH": "on"}, "HTTP_AUTH"},
		{"not on or off", map[string]string{"HTTP_AUTH": "yes"}, "HTTP_AUTH"},
		{"bad reads", map[string]string{"HTTP_AUTH_READS": "closed"}, "HTTP_AUTH_READS"},
		{"bad metrics", map[string]string{"HTTP_AUTH_METRICS": "yes"}, "HTTP_AUTH_METRICS"},
		{"bad scope", map[string]string{"HTTP_AUTH_WRITE_SCOPE": "orders write"}, "HTTP_AUTH_WRITE_SCOPE"},
		{"unreadable key file", map[string]string{"HTTP_AUTH": "on", "HTTP_JWT_KEY_FILE": filepath.Join(t.TempDir(), "missing.pem")}, "cannot be read: no such file"},
		{"key file without a key", map[string]string{"HTTP_JWT_KEY_FILE": writeFile(t, "empty.pem", []byte("hello"))}, "no PEM public key"},
		{"private key file", map[string]string{"HTTP_JWT_KEY_FILE": writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))}, "private key"},
		{"short RSA key", map[string]string{"HTTP_JWT_KEY_FILE": writeFile(t, "small.pem", pemPublic(t, &small.PublicKey))}, "1024 bits"},
		{"JWKS without a signing key", map[string]string{"HTTP_JWT_JWKS_FILE": writeFile(t, "k.json", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))}, "no RSA or EC signing key"},
		{"JWKS not JSON", map[string]string{"HTTP_JWT_JWKS_FILE": writeFile(t, "k.json", []byte(`keys`))}, "not a JWKS"},
		{"JWKS point off the curve", map[string]string{"HTTP_JWT_JWKS_FILE": writeFile(t, "k.json", []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"`+strings.Repeat("A", 43)+`","y":"`+strings.Repeat("A", 43)+`"}]}`))}, "HTTP_JWT_JWKS_FILE"},
		{"JWKS alg of another family", map[string]string{"HTTP_JWT_JWKS_FILE": writeFile(t, "k.json", []byte(strings.Replace(string(ecJWKS(t)), `"use"`, `"alg":"RS256","use"`, 1)))}, "does not go with"},
		{"short API key", map[string]string{"HTTP_API_KEYS": testAPIKey + ",short"}, "key 2 is 5 bytes"},
		{"empty API key", map[string]string{"HTTP_API_KEYS": testAPIKey + ","}, "key 2 is 0 bytes"},
		{"short HMAC secret", map[string]string{"HTTP_JWT_HMAC_SECRET": "secret-too-short"}, "HS256 wants at least 32"},
		{"issuer without keys", map[string]string{"HTTP_API_KEYS": testAPIKey, "HTTP_JWT_ISSUER": testIssuer}, "HTTP_JWT_ISSUER"},
		{"audience without keys", map[string]string{"HTTP_JWT_AUDIENCE": testAudience}, "HTTP_JWT_AUDIENCE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := envOf(tt.vars)
			httpserver.AuthFromEnv(e)
			err := e.Err()
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.As(err, new(*config.VarError)) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.want != "HTTP_AUTH" && strings.Contains(err.Error(), "needs credentials") {
				t.Errorf("error %q also says credentials are missing, but some were set", err)
			}
			for _, secret := range []string{"short", "secret-too-short", testAPIKey} {
				if strings.Contains(tt.vars["HTTP_API_KEYS"]+tt.vars["HTTP_JWT_HMAC_SECRET"], secret) && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes the secret %q", err, secret)
				}
			}
		})
	}
	t.Run("valid settings", func(t *testing.T) {
		vars := fullEnv(t)
		vars["HTTP_JWT_KEY_FILE"], vars["HTTP_JWT_HMAC_SECRET"] = rsaPath, testSecret
		vars["HTTP_AUTH_READS"], vars["HTTP_AUTH_METRICS"], vars["HTTP_AUTH"] = "required", "required", "ON"
		if a := authFrom(t, vars); !a.Enabled() {
			t.Error("not enabled")
		}
	})
}

func TestAuthLogValueHidesSecrets(t *testing.T) {
	vars := fullEnv(t)
	vars["HTTP_JWT_HMAC_SECRET"] = testSecret
	a := authFrom(t, vars)
	var js bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("starting", "auth", a)
	type wrapper struct{ Auth httpserver.Auth }
	outputs := []string{a.String(), a.LogValue().String(), js.String(),
		fmt.Sprintf("%v", a), fmt.Sprintf("%+v", a), fmt.Sprintf("%#v", a), fmt.Sprintf("%+v", wrapper{a})}
	for _, out := range outputs {
		for _, secret := range []string{testAPIKey, "another-key-of-16+", testSecret, "an-hs256"} {
			if strings.Contains(out, secret) {
				t.Errorf("%q shows %q", out, secret)
			}
		}
		if !strings.Contains(out, "api_keys=2") && !strings.Contains(out, `"api_keys":2`) {
			t.Errorf("%q does not count the API keys", out)
		}
	}
	if !strings.Contains(js.String(), `"mode":"on"`) || !strings.Contains(js.String(), "HS256 secret") || !strings.Contains(js.String(), testIssuer) {
		t.Errorf("LogValue says too little: %s", js.String())
	}
	if s := authFrom(t, nil).String(); s != "auth[mode=off]" {
		t.Errorf("off: %s", s)
	}
}
