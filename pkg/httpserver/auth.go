package httpserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/correlation"
)

// Problem types of requests refused by Auth.
const (
	ProblemUnauthenticated = "urn:orderflow:problem:unauthenticated"
	ProblemForbidden       = "urn:orderflow:problem:forbidden"
)

// DefaultWriteScope is the scope a token needs for a write unless
// HTTP_AUTH_WRITE_SCOPE names another.
const DefaultWriteScope = "orderflow:write"

// JWTLeeway is the clock skew allowed on a token's exp, nbf and iat.
const JWTLeeway = 30 * time.Second

// minAPIKeyLen and minHMACSecretLen refuse guessable secrets: HS256 wants
// a key of at least its 256-bit output (RFC 7518 3.2).
const (
	minAPIKeyLen     = 16
	minHMACSecretLen = 32
)

// Auth decides which requests need credentials and checks them: an API key
// (X-API-Key) or a JWT (Authorization: Bearer). The zero value is off and
// lets everything through; AuthFromEnv builds one from the environment.
//
// When on, every request whose method is not GET, HEAD or OPTIONS needs
// credentials and, for a JWT, the write scope; reads and /metrics need
// them when so configured; /healthz and /readyz never do, so probes keep
// working.
type Auth struct {
	on         bool
	reads      bool   // GET, HEAD, OPTIONS need credentials
	metrics    bool   // /metrics needs credentials
	writeScope string // "": any valid token may write
	// apiKeys holds the SHA-256 of each key, never the key: a memory dump
	// or a stray %v shows no usable secret.
	apiKeys  [][sha256.Size]byte
	jwt      *jwtVerifier // nil: no JWT accepted
	sources  []string     // where the JWT keys came from, for LogValue
	issuer   string
	audience string
	log      *slog.Logger
}

// AuthFromEnv reads HTTP_AUTH (off | on), HTTP_AUTH_READS and
// HTTP_AUTH_METRICS (open | required), HTTP_AUTH_WRITE_SCOPE (default
// DefaultWriteScope; none: any valid token may write), HTTP_API_KEYS
// (comma-separated), HTTP_JWT_KEY_FILE (PEM public keys, RSA or EC),
// HTTP_JWT_JWKS_FILE (a JWKS document), HTTP_JWT_HMAC_SECRET (HS256),
// HTTP_JWT_ISSUER and HTTP_JWT_AUDIENCE. Every setting is checked even
// when auth is off, so a broken one shows before it is switched on;
// problems are collected in e (whose errors hide the secrets' values).
func AuthFromEnv(e *config.Env) Auth {
	a := Auth{
		on:       e.OneOf("HTTP_AUTH", "off", "off", "on") == "on",
		reads:    e.OneOf("HTTP_AUTH_READS", "open", "open", "required") == "required",
		metrics:  e.OneOf("HTTP_AUTH_METRICS", "open", "open", "required") == "required",
		issuer:   e.String("HTTP_JWT_ISSUER", ""),
		audience: e.String("HTTP_JWT_AUDIENCE", ""),
	}
	a.writeScope = e.String("HTTP_AUTH_WRITE_SCOPE", DefaultWriteScope)
	if a.writeScope == "none" {
		a.writeScope = ""
	} else if !validScope(a.writeScope) {
		e.Reject("HTTP_AUTH_WRITE_SCOPE", "is not one scope (printable ASCII without spaces, quotes or backslashes), or none")
	}

	if v := e.String("HTTP_API_KEYS", ""); v != "" {
		for i, k := range strings.Split(v, ",") {
			if reason := badAPIKey(k); reason != "" {
				e.Reject("HTTP_API_KEYS", fmt.Sprintf("key %d %s", i+1, reason))
				continue
			}
			a.apiKeys = append(a.apiKeys, sha256.Sum256([]byte(k)))
		}
	}

	// jwtSet: a JWT key or secret was set, if not usable (its own
	// rejection then says why).
	jwtSet := false
	var keys []jwtKey
	files := []struct {
		name, path string
		read       func(string) ([]jwtKey, error)
	}{
		{"HTTP_JWT_KEY_FILE", e.String("HTTP_JWT_KEY_FILE", ""), readPEMKeys},
		{"HTTP_JWT_JWKS_FILE", e.String("HTTP_JWT_JWKS_FILE", ""), readJWKS},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		jwtSet = true
		ks, err := f.read(f.path)
		if err != nil {
			e.Reject(f.name, err.Error())
			continue
		}
		keys = append(keys, ks...)
		a.sources = append(a.sources, fmt.Sprintf("%s (%d keys)", f.path, len(ks)))
	}
	var secret []byte
	if s := e.String("HTTP_JWT_HMAC_SECRET", ""); s != "" {
		jwtSet = true
		if len(s) < minHMACSecretLen {
			e.Reject("HTTP_JWT_HMAC_SECRET", fmt.Sprintf("is %d bytes; HS256 wants at least %d", len(s), minHMACSecretLen))
		} else {
			secret = []byte(s)
			a.sources = append(a.sources, "HS256 secret")
		}
	}
	if len(keys) > 0 || secret != nil {
		a.jwt = newJWTVerifier(keys, secret, a.issuer, a.audience)
	} else if !jwtSet && (a.issuer != "" || a.audience != "") {
		name := "HTTP_JWT_ISSUER"
		if a.issuer == "" {
			name = "HTTP_JWT_AUDIENCE"
		}
		e.Reject(name, "checks tokens, but no HTTP_JWT_KEY_FILE, HTTP_JWT_JWKS_FILE or HTTP_JWT_HMAC_SECRET is set to verify them")
	}

	if a.on && !jwtSet && e.String("HTTP_API_KEYS", "") == "" {
		e.Reject("HTTP_AUTH", "needs credentials to check: set HTTP_API_KEYS, HTTP_JWT_KEY_FILE, HTTP_JWT_JWKS_FILE or HTTP_JWT_HMAC_SECRET")
	}
	return a
}

// badAPIKey says what is wrong with one key of HTTP_API_KEYS, or "".
func badAPIKey(k string) string {
	if len(k) < minAPIKeyLen {
		return fmt.Sprintf("is %d bytes; want at least %d", len(k), minAPIKeyLen)
	}
	for i := 0; i < len(k); i++ {
		// An HTTP header cannot carry the rest intact (Go trims the spaces).
		if k[i] <= ' ' || k[i] > '~' {
			return fmt.Sprintf("has a byte that is not printable ASCII at %d", i)
		}
	}
	return ""
}

// validScope reports whether s is one scope-token of RFC 6749 3.3.
func validScope(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// WithLog returns a with its refusals logged to log (default: discarded).
// A line names the check that failed, never the credential.
func (a Auth) WithLog(log *slog.Logger) Auth {
	a.log = log
	return a
}

// Enabled reports whether HTTP_AUTH is on.
func (a Auth) Enabled() bool { return a.on }

// LogValue describes the settings without a secret: how many API keys,
// where the JWT keys come from, whether an HMAC secret is set.
func (a Auth) LogValue() slog.Value {
	if !a.on {
		return slog.GroupValue(slog.String("mode", "off"))
	}
	mode := func(required bool) string {
		if required {
			return "required"
		}
		return "open"
	}
	attrs := []slog.Attr{
		slog.String("mode", "on"),
		slog.String("reads", mode(a.reads)),
		slog.String("metrics", mode(a.metrics)),
		slog.String("write_scope", orNone(a.writeScope)),
		slog.Int("api_keys", len(a.apiKeys)),
	}
	if len(a.sources) > 0 {
		attrs = append(attrs, slog.String("jwt", strings.Join(a.sources, ", ")))
	}
	if a.issuer != "" {
		attrs = append(attrs, slog.String("issuer", a.issuer))
	}
	if a.audience != "" {
		attrs = append(attrs, slog.String("audience", a.audience))
	}
	return slog.GroupValue(attrs...)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// String is LogValue as text, so printing an Auth with %v or %s shows no
// secret either.
func (a Auth) String() string { return "auth" + a.LogValue().String() }

// GoString keeps %#v from printing the fields.
func (a Auth) GoString() string { return a.String() }

// Middleware refuses the requests that need credentials and carry none
// that pass, before next sees them: 401 with a WWW-Authenticate challenge,
// or 403 for a token without the write scope, as problem+json. Off, it
// returns next itself.
//
// It goes around the whole router (it tells /healthz, /readyz and
// /metrics by their paths) or inside it on a group of routes.
func (a Auth) Middleware(next http.Handler) http.Handler {
	if !a.on {
		return next
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A write to /healthz needs credentials too: only GET is served
		// there, so it would be refused with a 405 anyway.
		write := !safeMethod(r.Method)
		if !write && !a.readNeedsAuth(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		p, ref := a.authenticate(r)
		if ref == nil && write && !p.canWrite {
			ref = &refusal{status: http.StatusForbidden, code: "insufficient_scope", credential: p.credential,
				detail: "the token lacks the scope " + a.writeScope + ", which writes need",
				reason: "write scope missing", subject: p.subject}
		}
		if ref != nil {
			a.refuse(w, r, ref)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// safeMethod reports the methods that only read (RFC 9110 9.2.1, less
// TRACE, which the services do not serve).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func isProbe(path string) bool { return path == "/healthz" || path == "/readyz" }

func (a Auth) readNeedsAuth(path string) bool {
	switch {
	case isProbe(path):
		return false
	case path == "/metrics":
		return a.metrics
	default:
		return a.reads
	}
}

// principal is who passed: an API key, or a token's subject and scopes.
type principal struct {
	credential string // "api-key" or "bearer"
	subject    string
	canWrite   bool
}

// refusal is why a request is turned away: what the client is told and
// what the log says, neither naming the credential.
type refusal struct {
	status     int
	code       string // RFC 6750 error: "", invalid_request, invalid_token, insufficient_scope
	detail     string
	reason     string
	credential string // "none", "api-key", "bearer", "other"
	subject    string
}

func (a Auth) authenticate(r *http.Request) (principal, *refusal) {
	authz, keys := r.Header.Values("Authorization"), r.Header.Values("X-API-Key")
	switch {
	case len(authz) == 0 && len(keys) == 0:
		return principal{}, &refusal{status: http.StatusUnauthorized, credential: "none", reason: "no credentials",
			detail: "this request needs credentials: Authorization: Bearer <token> or X-API-Key: <key>"}
	case len(authz)+len(keys) > 1:
		return principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_request", credential: "several",
			reason: "more than one credential", detail: "send one credential, in one header"}
	case len(keys) == 1:
		return a.checkAPIKey(keys[0])
	}
	scheme, token, _ := strings.Cut(authz[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return principal{}, &refusal{status: http.StatusUnauthorized, credential: "other", reason: "not a bearer token",
			detail: "the Authorization scheme must be Bearer"}
	}
	return a.checkToken(strings.TrimLeft(token, " "))
}

func (a Auth) checkAPIKey(key string) (principal, *refusal) {
	sum := sha256.Sum256([]byte(key))
	match := 0
	// Every stored key is compared, so the time taken says nothing of
	// which (or whether one) matched.
	for _, k := range a.apiKeys {
		match |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	if match == 0 {
		return principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_token", credential: "api-key",
			reason: "unknown API key", detail: "the API key is not valid"}
	}
	return principal{credential: "api-key", canWrite: true}, nil
}

func (a Auth) checkToken(token string) (principal, *refusal) {
	bad := func(reason, detail string) (principal, *refusal) {
		return principal{}, &refusal{status: http.StatusUnauthorized, code: "invalid_token", credential: "bearer",
			reason: reason, detail: detail}
	}
	if a.jwt == nil {
		return bad("bearer token but no JWT keys", "this service takes an X-API-Key, not a bearer token")
	}
	c, err := a.jwt.verify(token)
	if err != nil {
		reason := tokenReason(err)
		return bad(reason, "the token is not valid: "+reason)
	}
	return principal{credential: "bearer", subject: c.Subject,
		canWrite: a.writeScope == "" || slices.Contains(c.scopes(), a.writeScope)}, nil
}

// tokenReason names the check a token failed, from jwt's error; the
// error's own text is not used, as it may quote parts of the token.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, errNoKey), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature or algorithm not accepted"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "issuer not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "audience not accepted"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim (exp, iss, aud) is missing"
	default:
		return "invalid"
	}
}

// refuse answers a request that did not pass. Around the router the
// request has no correlation id yet; it gets one here, so the 401 carries
// X-Correlation-ID like every other answer and the log line can be found
// by it.
func (a Auth) refuse(w http.ResponseWriter, r *http.Request, f *refusal) {
	if correlation.ID(r.Context()) == "" {
		correlation.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.refuse(w, r, f)
		})).ServeHTTP(w, r)
		return
	}
	challenge := `Bearer realm="orderflow"`
	if f.code != "" {
		challenge += `, error="` + f.code + `"`
	}
	p := Problem{Type: ProblemUnauthenticated, Title: "Unauthenticated", Status: f.status, Detail: f.detail}
	if f.status == http.StatusForbidden {
		challenge += `, scope="` + a.writeScope + `"`
		p.Type, p.Title = ProblemForbidden, "Forbidden"
	}
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Cache-Control", "no-store")
	attrs := []any{"status", f.status, "reason", f.reason, "credential", f.credential, "method", r.Method, "path", r.URL.Path}
	if f.subject != "" {
		attrs = append(attrs, "subject", f.subject)
	}
	a.log.InfoContext(r.Context(), "request refused", attrs...)
	WriteProblem(w, r, p)
}

// tokenClaims are the claims read from a token: the registered ones and
// the scopes, as OAuth's space-separated "scope" or a "scp" string or
// list (Azure AD, Okta).
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope json.RawMessage `json:"scope,omitempty"`
	Scp   json.RawMessage `json:"scp,omitempty"`
}

func (c *tokenClaims) scopes() []string {
	var all []string
	for _, raw := range []json.RawMessage{c.Scope, c.Scp} {
		var s string
		var list []string
		if json.Unmarshal(raw, &s) == nil {
			all = append(all, strings.Fields(s)...)
		} else if json.Unmarshal(raw, &list) == nil {
			all = append(all, list...)
		}
	}
	return all
}
