package opcua

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ApplicationURI is the agent's OPC UA application URI, also in its certificate.
func ApplicationURI(agentID string) string { return "urn:takt:agent:" + agentID }

// LoadOrCreateCertificate returns the client certificate (DER) and key in the given
// PEM files, making a self-signed one (RSA 2048, ten years, the agent's application
// URI) and keeping it there when the files do not exist yet.
//
// Several servers of one agent share the default files and connect at once: one
// certificate is made, under a lock, and written atomically (key first), so that
// every server presents the one an operator finds in the file.
func LoadOrCreateCertificate(certFile, keyFile, agentID string) ([]byte, *rsa.PrivateKey, error) {
	certMu.Lock()
	defer certMu.Unlock()
	certPEM, cerr := os.ReadFile(certFile)
	keyPEM, kerr := os.ReadFile(keyFile)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		return createCertificate(certFile, keyFile, agentID)
	}
	if cerr != nil || kerr != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", errors.Join(cerr, kerr))
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("client certificate %q or key %q: not PEM", certFile, keyFile)
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		k8, err8 := x509.ParsePKCS8PrivateKey(kb.Bytes)
		rk, ok := k8.(*rsa.PrivateKey)
		if err8 != nil || !ok {
			return nil, nil, fmt.Errorf("private key %q: not an RSA key", keyFile)
		}
		key = rk
	}
	return cb.Bytes, key, nil
}

func createCertificate(certFile, keyFile, agentID string) ([]byte, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	uri, _ := url.Parse(ApplicationURI(agentID))
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "takt-agent " + agentID, Organization: []string{"Takt"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
		DNSNames:              []string{host},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range []string{certFile, keyFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, nil, err
		}
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// certMu serialises making the agent's certificate.
var certMu sync.Mutex

// writeAtomic writes data to a temporary file beside path and renames it there:
// a reader sees the whole file or none.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// CheckTrusted reports whether the server certificate (DER) is one of the files in
// trustDir (DER or PEM). An untrusted one is saved in the sibling directory
// "rejected", named by its SHA-1 thumbprint, so that an operator can review it and
// move it into trustDir, as OPC UA tools do.
func CheckTrusted(trustDir string, der []byte) error {
	if len(der) == 0 {
		return errors.New("the server sent no certificate")
	}
	entries, _ := os.ReadDir(trustDir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(trustDir, e.Name()))
		if err != nil {
			continue
		}
		if b, _ := pem.Decode(data); b != nil {
			data = b.Bytes
		}
		if bytes.Equal(data, der) {
			return nil
		}
	}
	sum := sha1.Sum(der)
	thumb := hex.EncodeToString(sum[:])
	rejected := filepath.Join(filepath.Dir(trustDir), "rejected")
	if err := os.MkdirAll(rejected, 0o700); err == nil {
		os.WriteFile(filepath.Join(rejected, thumb+".der"), der, 0o644)
	}
	subject := "?"
	if c, err := x509.ParseCertificate(der); err == nil {
		subject = c.Subject.String()
	}
	return fmt.Errorf("server certificate %q (SHA-1 %s) is not trusted: it was saved in %s; move it into %s to trust it",
		subject, thumb, rejected, trustDir)
}
