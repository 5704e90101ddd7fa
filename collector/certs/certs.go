// Package certs creates the collector's mutual-TLS material in one step: a
// CA, a server certificate for the given hosts and one client certificate
// per agent (common name = agent id). Keys are ECDSA P-256; every file is
// written with mode 0600.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
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
