// Package certs creates the collector's mutual-TLS material in one step: a
// CA, a server certificate for the given hosts and one client certificate
// per agent (common name = agent id). Keys are ECDSA P-256; every file is
// written with mode 0600.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside the directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// AgentFiles returns the certificate and key file names of an agent.
func AgentFiles(agent string) (cert, key string) {
	return "agent-" + agent + ".pem", "agent-" + agent + "-key.pem"
}

// Options for Generate.
type Options struct {
	Dir      string
	Agents   []string
	Hosts    []string // DNS names and IP addresses of the collector
	Validity time.Duration
	// Name is the CA's common name.
	Name string
}

// Generate writes the CA, server and agent certificates. It refuses to
// overwrite an existing CA.
func Generate(o Options) error {
	if o.Dir == "" || len(o.Hosts) == 0 {
		return errors.New("certs: dir and at least one host are required")
	}
	for _, a := range o.Agents {
		if a == "" || filepath.Base(a) != a {
			return fmt.Errorf("certs: agent name %q is not a plain name", a)
		}
	}
	if o.Validity == 0 {
		o.Validity = 2 * 365 * 24 * time.Hour
	}
	if o.Name == "" {
		o.Name = "watchpost CA"
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", o.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, CAFile)); err == nil {
		return fmt.Errorf("certs: %s already exists in %s", CAFile, o.Dir)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating ca key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: o.Name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("parsing ca certificate: %w", err)
	}
	if err := writePair(o.Dir, CAFile, CAKeyFile, caDER, caKey); err != nil {
		return err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "watchpost-collector"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(o.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	if err := issue(o.Dir, ServerFile, ServerKeyFile, server, caCert, caKey); err != nil {
		return err
	}
	for _, a := range o.Agents {
		cert, key := AgentFiles(a)
		if err := issue(o.Dir, cert, key, &x509.Certificate{
			Subject:     pkix.Name{CommonName: a},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.Add(o.Validity),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, caCert, caKey); err != nil {
			return err
		}
	}
	return nil
}

func issue(dir, certName, keyName string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", certName, err)
	}
	der, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, certName, keyName, der, key)
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", keyName, err)
	}
	if err := writeFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	return f.Close()
}

// Revocation is one entry of the revocation list: a whole identity (Serial
// empty: every certificate of that name) or one certificate.
type Revocation struct {
	Name   string    `json:"name"`
	Serial string    `json:"serial,omitempty"` // lower-case hex, as `watchpost hosts` shows it
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// RevocationList is the revocation file the collector re-reads whenever it
// changes (no restart needed).
type RevocationList struct {
	Revoked []Revocation `json:"revoked"`
}

// SerialHex is a certificate's serial number as the revocation list and
// `watchpost hosts` write it.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Find returns the entry that revokes a certificate of identity name,
// or nil.
func (l *RevocationList) Find(name string, c *x509.Certificate) *Revocation {
	serial := SerialHex(c)
	for i := range l.Revoked {
		r := &l.Revoked[i]
		if r.Name == name && (r.Serial == "" || r.Serial == serial) {
			return r
		}
	}
	return nil
}

// ReadRevocations reads a revocation file; a missing file is an empty list.
func ReadRevocations(path string) (*RevocationList, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &RevocationList{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading revocations: %w", err)
	}
	var l RevocationList
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", path, err)
	}
	for i, r := range l.Revoked {
		if r.Name == "" {
			return nil, fmt.Errorf("revocation file %s: revoked[%d].name: required", path, i)
		}
		if _, ok := new(big.Int).SetString(r.Serial, 16); r.Serial != "" && !ok {
			return nil, fmt.Errorf("revocation file %s: revoked[%d].serial: %q is not hexadecimal", path, i, r.Serial)
		}
	}
	return &l, nil
}

// Revoke adds an entry to the revocation file (created 0600) and replaces
// it atomically. serial "" revokes every certificate of the name.
func Revoke(path, name, serial, reason string, now time.Time) error {
	if name == "" {
		return errors.New("certs revoke: a name is required")
	}
	if serial != "" {
		n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(serial), "0x"), 16)
		if !ok {
			return fmt.Errorf("certs revoke: serial %q is not hexadecimal", serial)
		}
		serial = n.Text(16)
	}
	l, err := ReadRevocations(path)
	if err != nil {
		return err
	}
	if l.Revoked == nil {
		l.Revoked = []Revocation{}
	}
	for _, r := range l.Revoked {
		if r.Name == name && r.Serial == serial {
			return nil // already revoked
		}
	}
	l.Revoked = append(l.Revoked, Revocation{Name: name, Serial: serial, At: now.UTC(), Reason: reason})
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := writeFile(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}
