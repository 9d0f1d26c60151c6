// Package pii encrypts personal data at rest, column by column: AES-256-GCM under
// keys named by an id, so that keys can be rotated while old rows stay readable, and
// a keyed hash (HMAC-SHA256 under a separate index key) for looking a value up by
// equality without decrypting.
//
// A sealed value is text: "pii:v1:" + key id + ":" + base64url(nonce || ciphertext).
// The additional data binds it to its place (column and tenant), so a value copied
// into another column or tenant does not open.
//
// Keys come from a Provider: the environment or a file today (FromEnv), a KMS later.
// The format is a list of id:base64 entries, separated by commas, spaces or new
// lines; "index" names the index key; the first other entry is the current key,
// which seals; every listed key opens. Each key is 32 random bytes (Keygen).
package pii

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"takt.dev/servicekit"
)

// Prefix starts every sealed value.
const Prefix = "pii:v1:"

// EnvKeys names the environment variable holding the keys (or, with _FILE, a file).
const EnvKeys = "TAKT_PII_KEYS"

// IndexID names the index key in a key list.
const IndexID = "index"

// Keys is what a Provider supplies.
type Keys struct {
	Current string            // the id that seals
	Data    map[string][]byte // every id that opens, the current one included
	Index   []byte            // the HMAC key of lookup hashes; never rotated with the data keys
}

// Provider supplies the keys: from the environment or a file now, a KMS later.
type Provider interface {
	Keys(ctx context.Context) (Keys, error)
}

// ErrNoKeys is returned when no keys are configured.
var ErrNoKeys = errors.New("no PII keys: set " + EnvKeys + " or " + EnvKeys + "_FILE (make one with `takt-api pii keygen`; see docs/security.md)")

// envProvider reads the keys from TAKT_PII_KEYS or the file TAKT_PII_KEYS_FILE names.
type envProvider struct{ getenv func(string) string }

// FromEnv is the Provider of the environment (TAKT_PII_KEYS, or TAKT_PII_KEYS_FILE).
func FromEnv(getenv func(string) string) Provider { return envProvider{getenv} }

func (p envProvider) Keys(context.Context) (Keys, error) {
	raw, err := servicekit.Env(p.getenv, EnvKeys)
	if err != nil {
		return Keys{}, err
	}
	if strings.TrimSpace(raw) == "" {
		return Keys{}, ErrNoKeys
	}
	return Parse(raw)
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Parse reads a key list. Errors name the entry by position and id, never a key.
func Parse(raw string) (Keys, error) {
	k := Keys{Data: map[string][]byte{}}
	fields := strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	for i, f := range fields {
		id, b64, ok := strings.Cut(f, ":")
		if !ok || !idPattern.MatchString(id) {
			return Keys{}, fmt.Errorf("%s: entry %d: want id:base64 with an id of lower-case letters, digits, - and _ (up to 32)", EnvKeys, i+1)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			key, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
		}
		if err != nil || len(key) != 32 {
			return Keys{}, fmt.Errorf("%s: key %q: want 32 bytes in base64", EnvKeys, id)
		}
		if id == IndexID {
			if k.Index != nil {
				return Keys{}, fmt.Errorf("%s: the index key is listed twice", EnvKeys)
			}
			k.Index = key
			continue
		}
		if _, dup := k.Data[id]; dup {
			return Keys{}, fmt.Errorf("%s: key %q is listed twice", EnvKeys, id)
		}
		if k.Current == "" {
			k.Current = id
		}
		k.Data[id] = key
	}
	switch {
	case k.Current == "":
		return Keys{}, fmt.Errorf("%s: no data key (an entry other than %q)", EnvKeys, IndexID)
	case k.Index == nil:
		return Keys{}, fmt.Errorf("%s: no index key (an entry %q:...)", EnvKeys, IndexID)
	}
	return k, nil
}

// Keygen returns a new key entry, id:base64 of 32 random bytes.
func Keygen(id string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("key id %q: want lower-case letters, digits, - and _ (up to 32)", id)
	}
	key := make([]byte, 32)
	rand.Read(key)
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}

// Keyring seals and opens values. Safe for concurrent use.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
	index   []byte
}

// Load reads the keys from p.
func Load(ctx context.Context, p Provider) (*Keyring, error) {
	k, err := p.Keys(ctx)
	if err != nil {
		return nil, err
	}
	return New(k)
}

// New builds a keyring from keys.
func New(k Keys) (*Keyring, error) {
	if _, ok := k.Data[k.Current]; !ok || len(k.Index) != 32 {
		return nil, errors.New("pii: a current data key and a 32-byte index key are needed")
	}
	r := &Keyring{current: k.Current, aeads: map[string]cipher.AEAD{}, index: k.Index}
	for id, key := range k.Data {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("pii: key %q: %w", id, err)
		}
		if r.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Current is the id of the key that seals.
func (r *Keyring) Current() string { return r.current }

// Place is where a value lives, bound into its seal: a column and a tenant.
func Place(column, tenant string) []byte { return []byte(column + "\x00" + tenant) }

// Seal encrypts v for place under the current key.
func (r *Keyring) Seal(place []byte, v string) string {
	aead := r.aeads[r.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(v)+aead.Overhead())
	rand.Read(nonce)
	return Prefix + r.current + ":" + base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(v), place))
}

// Sealed reports whether v is a sealed value (rows written before encryption was
// on are not, until `takt-api pii rotate` seals them).
func Sealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// KeyID returns the id of the key that sealed v, or "" when v is not sealed.
func KeyID(v string) string {
	rest, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// Open decrypts a sealed value of place. A value that is not sealed is returned
// as it is (written before encryption was on).
func (r *Keyring) Open(place []byte, v string) (string, error) {
	rest, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return v, nil
	}
	id, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("pii: a sealed value without its key id")
	}
	aead, ok := r.aeads[id]
	if !ok {
		return "", fmt.Errorf("pii: key %q is not in %s (was it removed before `takt-api pii rotate` finished?)", id, EnvKeys)
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("pii: a value sealed with key %q is damaged", id)
	}
	out, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], place)
	if err != nil {
		return "", fmt.Errorf("pii: a value sealed with key %q does not open here (moved from another column or tenant, or altered)", id)
	}
	return string(out), nil
}

// Hash is the lookup hash of v: HMAC-SHA256 under the index key, of v with case
// and surrounding space ignored, so "Jane Doe " finds "jane doe".
func (r *Keyring) Hash(v string) []byte {
	m := hmac.New(sha256.New, r.index)
	m.Write([]byte(strings.ToLower(strings.TrimSpace(v))))
	return m.Sum(nil)
}

// SealPtr seals *v, keeping nil as nil.
func (r *Keyring) SealPtr(place []byte, v *string) *string {
	if v == nil {
		return nil
	}
	s := r.Seal(place, *v)
	return &s
}

// OpenPtr opens *v, keeping nil as nil.
func (r *Keyring) OpenPtr(place []byte, v *string) (*string, error) {
	if v == nil {
		return nil, nil
	}
	s, err := r.Open(place, *v)
	return &s, err
}
