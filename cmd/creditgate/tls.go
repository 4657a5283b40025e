package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"
)

// certificate holds the proxy listener's TLS certificate, read again on SIGHUP: connections
// made after a reload present the new one, those open keep theirs.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func newCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the files; on an error the certificate in use stays.
func (c *certificate) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("CREDITGATE_TLS_CERT_FILE, CREDITGATE_TLS_KEY_FILE: %w", err)
	}
	c.current.Store(&cert)
	return nil
}

// config is the listener's TLS configuration: HTTP/2 and HTTP/1.1 offered (the server adds
// HTTP/2 when it serves TLS), TLS 1.2 at least, the certificate read at each handshake.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
	}
}

// upstreamTLS builds the TLS configuration towards an https:// upstream from the files
// configured (a CA bundle, a client certificate and key); nil when none is set.
func upstreamTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CREDITGATE_UPSTREAM_CA_FILE: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CREDITGATE_UPSTREAM_CA_FILE: %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("CREDITGATE_UPSTREAM_CLIENT_CERT_FILE and CREDITGATE_UPSTREAM_CLIENT_KEY_FILE are both needed, or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("CREDITGATE_UPSTREAM_CLIENT_CERT_FILE, CREDITGATE_UPSTREAM_CLIENT_KEY_FILE: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
