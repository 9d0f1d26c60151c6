package pii

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func keyring(t *testing.T, raw string) *Keyring {
	t.Helper()
	k, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func entry(t *testing.T, id string) string {
	t.Helper()
	e, err := Keygen(id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSealOpenAndRotate(t *testing.T) {
	idx, k1, k2 := entry(t, IndexID), entry(t, "k1"), entry(t, "k2")
	old := keyring(t, idx+","+k1)
	place := Place("maintenance_event.technician", "acme")
	sealed := old.Seal(place, "Jane Doe")
	if !Sealed(sealed) || KeyID(sealed) != "k1" || strings.Contains(sealed, "Jane") {
		t.Fatalf("sealed %q", sealed)
	}
	if again := old.Seal(place, "Jane Doe"); again == sealed {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	// After rotation k2 seals and k1 still opens.
	both := keyring(t, k2+"\n"+idx+"\n"+k1)
	if both.Current() != "k2" || KeyID(both.Seal(place, "x")) != "k2" {
		t.Fatalf("current key %q, want k2 (the first data key listed)", both.Current())
	}
	if v, err := both.Open(place, sealed); err != nil || v != "Jane Doe" {
		t.Fatalf("opening a k1 value after rotation: %q, %v", v, err)
	}
	// The lookup hash does not change with the data keys, nor with case and space.
	if string(old.Hash("Jane Doe")) != string(both.Hash(" jane doe")) {
		t.Fatal("lookup hash changed with the data keys or the case")
	}
	for name, c := range map[string]struct {
		r     *Keyring
		place []byte
		v     string
		want  string
	}{
		"another tenant":   {both, Place("maintenance_event.technician", "other"), sealed, "does not open here"},
		"another column":   {both, Place("audit_log.actor", "acme"), sealed, "does not open here"},
		"altered":          {both, place, sealed[:len(sealed)-2] + "AA", "does not open here"},
		"truncated":        {both, place, Prefix + "k1:abc", "damaged"},
		"key removed":      {keyring(t, idx+","+k2), place, sealed, `key "k1" is not in`},
		"no key id at all": {both, place, Prefix + "nothing", "without its key id"},
	} {
		if _, err := c.r.Open(c.place, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if v, err := both.Open(place, "written before encryption"); err != nil || v != "written before encryption" {
		t.Fatalf("a value not sealed: %q, %v", v, err)
	}
}

func TestParseErrorsNameTheEntryNeverTheKey(t *testing.T) {
	idx, k1 := entry(t, IndexID), entry(t, "k1")
	short := "k3:" + "c2hvcnQ="
	for raw, want := range map[string]string{
		k1:                        "no index key",
		idx:                       "no data key",
		idx + "," + k1 + "," + k1: `key "k1" is listed twice`,
		idx + "," + short:         `key "k3": want 32 bytes`,
		idx + ",K1:abc":           "entry 2",
		idx + ",nokey":            "entry 2",
	} {
		_, err := Parse(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %v, want %q", raw, err, want)
			continue
		}
		if strings.Contains(err.Error(), idx[len(IndexID)+1:]) || strings.Contains(err.Error(), "c2hvcnQ") {
			t.Errorf("Parse error shows key material: %v", err)
		}
	}
}

func TestFromEnvAndFile(t *testing.T) {
	raw := entry(t, IndexID) + "," + entry(t, "k1")
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := Load(context.Background(), FromEnv(getenv)); err != ErrNoKeys {
		t.Fatalf("no keys: %v, want ErrNoKeys", err)
	}
	env[EnvKeys] = raw
	if r, err := Load(context.Background(), FromEnv(getenv)); err != nil || r.Current() != "k1" {
		t.Fatalf("from the environment: %v", err)
	}
	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte(strings.ReplaceAll(raw, ",", "\n")+"\n"), 0o600)
	env = map[string]string{EnvKeys + "_FILE": file}
	if r, err := Load(context.Background(), FromEnv(getenv)); err != nil || r.Current() != "k1" {
		t.Fatalf("from a file: %v", err)
	}
}
