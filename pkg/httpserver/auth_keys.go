package httpserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits refuses RSA keys too short to be safe (NIST SP 800-131A).
const minRSABits = 2048

// Algorithms each kind of key verifies. A key is never used with another
// family's algorithm: an RS256 public key must not become an HS256 secret.
var (
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecAlgs  = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
)

// errNoKey is a token that no configured key may verify: its alg or kid
// matches none.
var errNoKey = errors.New("no key for the token's alg and kid")

// jwtKey is one public key and the algorithms it verifies.
type jwtKey struct {
	kid  string // "" matches any token's kid
	algs []string
	key  crypto.PublicKey
}

// jwtVerifier checks a token's signature with the configured keys and its
// claims: exp required, nbf and iat, within JWTLeeway; iss and aud when
// configured.
type jwtVerifier struct {
	parser *jwt.Parser
	keys   []jwtKey
	secret []byte // HS256; nil: none
}

func newJWTVerifier(keys []jwtKey, secret []byte, issuer, audience string) *jwtVerifier {
	var algs []string
	for _, k := range keys {
		for _, alg := range k.algs {
			if !slices.Contains(algs, alg) {
				algs = append(algs, alg)
			}
		}
	}
	if secret != nil {
		algs = append(algs, "HS256")
	}
	// Only the algorithms of the keys configured: "none" and any other
	// are refused before a key is looked up.
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithLeeway(JWTLeeway),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	return &jwtVerifier{parser: jwt.NewParser(opts...), keys: keys, secret: secret}
}

func (v *jwtVerifier) verify(token string) (*tokenClaims, error) {
	c := new(tokenClaims)
	if _, err := v.parser.ParseWithClaims(token, c, v.keyFor); err != nil {
		return nil, err
	}
	return c, nil
}

// keyFor picks the keys that may verify t: the secret for HS256, else the
// public keys whose algorithms include t's and whose kid, when both have
// one, is t's.
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == "HS256" {
		if v.secret == nil {
			return nil, errNoKey
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		if slices.Contains(k.algs, alg) && (kid == "" || k.kid == "" || k.kid == kid) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, errNoKey
	}
	return set, nil
}

// readPEMKeys reads the public keys of a PEM file: PUBLIC KEY (PKIX), RSA
// PUBLIC KEY (PKCS #1) or CERTIFICATE blocks, RSA or EC. A private key in
// the file is refused: the service must not hold what can sign tokens.
func readPEMKeys(path string) ([]jwtKey, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var keys []jwtKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var pub any
		switch {
		case block.Type == "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case block.Type == "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("block %d is a private key; give the service the public key only", n)
		default:
			return nil, fmt.Errorf("block %d is a %s, not a public key", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("block %d: %v", n, err)
		}
		k, err := publicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("block %d: %v", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("holds no PEM public key")
	}
	return keys, nil
}

// publicKey is pub with the algorithms it verifies.
func publicKey(pub any) (jwtKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return jwtKey{}, fmt.Errorf("the RSA key has %d bits; want at least %d", k.N.BitLen(), minRSABits)
		}
		return jwtKey{algs: rsaAlgs, key: k}, nil
	case *ecdsa.PublicKey:
		alg, ok := ecAlgs[k.Curve.Params().Name]
		if !ok {
			return jwtKey{}, fmt.Errorf("the EC key's curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		return jwtKey{algs: []string{alg}, key: k}, nil
	default:
		return jwtKey{}, fmt.Errorf("a %T is not an RSA or EC public key", pub)
	}
}

// jwk holds the members of a JSON Web Key (RFC 7517, 7518 6) read here.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// readJWKS reads the signing keys of a JWKS document, {"keys": [...]}:
// RSA (n, e) and EC (crv, x, y). Keys for encryption (use "enc") and of
// other types (oct, OKP) are passed over; a malformed RSA or EC key, or a
// document with no usable key, is an error.
func readJWKS(path string) ([]jwtKey, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("is not a JWKS document: %v", err)
	}
	var keys []jwtKey
	for i, j := range doc.Keys {
		if j.Use != "" && j.Use != "sig" || j.Kty != "RSA" && j.Kty != "EC" {
			continue
		}
		k, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %v", i+1, j.Kid, err)
		}
		if j.Alg != "" {
			if !slices.Contains(k.algs, j.Alg) {
				return nil, fmt.Errorf("key %d (kid %q): alg %s does not go with a %s key", i+1, j.Kid, j.Alg, j.Kty)
			}
			k.algs = []string{j.Alg}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("holds no RSA or EC signing key")
	}
	return keys, nil
}

func (j jwk) key() (jwtKey, error) {
	if j.Kty == "RSA" {
		n, err := b64Int(j.N, "n")
		if err != nil {
			return jwtKey{}, err
		}
		e, err := b64Int(j.E, "e")
		if err != nil {
			return jwtKey{}, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return jwtKey{}, errors.New("e is not a usable RSA exponent")
		}
		k, err := publicKey(&rsa.PublicKey{N: n, E: int(e.Int64())})
		k.kid = j.Kid
		return k, err
	}
	curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
	curve, ok := curves[j.Crv]
	if !ok {
		return jwtKey{}, fmt.Errorf("crv %q is not P-256, P-384 or P-521", j.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, errX := base64.RawURLEncoding.DecodeString(strings.TrimRight(j.X, "="))
	y, errY := base64.RawURLEncoding.DecodeString(strings.TrimRight(j.Y, "="))
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return jwtKey{}, fmt.Errorf("x and y must be %d bytes each, base64url", size)
	}
	// ParseUncompressedPublicKey refuses a point off the curve.
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
	if err != nil {
		return jwtKey{}, err
	}
	k, err := publicKey(pub)
	k.kid = j.Kid
	return k, err
}

func b64Int(s, name string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s is not base64url", name)
	}
	return new(big.Int).SetBytes(b), nil
}

// readFile reads path, its error without the path the variable already
// names.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return nil, fmt.Errorf("cannot be read: %v", pe.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %v", err)
	}
	return b, nil
}
