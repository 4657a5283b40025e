package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn, and its key, to dir.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Rename(keyFile+".tmp", keyFile)
	_ = os.Rename(certFile+".tmp", certFile)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSListener: with a certificate the proxy listener speaks TLS, HTTP/2 to a client that
// offers it; a certificate swapped on disk is served after SIGHUP, without a restart.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, "first")
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL":  up.URL,
		"CREDITGATE_ORGS":          "acme:limit=1000,keys=acme-key;broke:limit=1,keys=broke-key",
		"CREDITGATE_TLS_CERT_FILE": certFile,
		"CREDITGATE_TLS_KEY_FILE":  keyFile,
	})
	base := strings.Replace(gw.base, "http://", "https://", 1)
	get := func(pool *x509.CertPool) (*http.Response, string) {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
		}}
		defer c.CloseIdleConnections()
		return call(t, c, "GET", base+"/crm/v2/users", "acme-key")
	}
	resp, body := get(pool)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("X-Credits-Charged") != "1" {
		t.Fatalf("over TLS: %d %s, %s", resp.StatusCode, resp.Proto, body)
	}
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "first" {
		t.Fatalf("certificate %q", cn)
	}

	// A refusal before a body is read resets that stream only: the client's HTTP/2
	// connection, and its other calls, go on.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	call(t, c, "GET", base+"/crm/v2/users", "broke-key") // its one credit
	req, _ := http.NewRequest("POST", base+"/crm/v8/Leads", io.LimitReader(zeros{}, 1<<20))
	req.Header.Set("Authorization", "Bearer broke-key")
	req.ContentLength = -1
	r429, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r429.Body.Close()
	reused := false
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ = http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/crm/v2/users", nil)
	req.Header.Set("Authorization", "Bearer acme-key")
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r429.StatusCode != 429 || r2.StatusCode != 200 || !reused {
		t.Fatalf("refused upload %d, next call %d on the same connection %v", r429.StatusCode, r2.StatusCode, reused)
	}

	_, _, pool2 := writeCert(t, dir, "second")
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}}
		defer c.CloseIdleConnections()
		r, err := c.Get(base + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.TLS.PeerCertificates[0].Subject.CommonName == "second"
	})
	resp, _ = get(pool2)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("after the swap: %d %s", resp.StatusCode, resp.Proto)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestHTTPSUpstreamPrivateCA: an https:// upstream whose certificate chains to a private CA,
// and which asks for a client certificate, is reached with CREDITGATE_UPSTREAM_CA_FILE and
// the client certificate, over HTTP/2, or HTTP/1.1 with CREDITGATE_UPSTREAM_HTTP2=false;
// without the CA the call fails as unreachable (502, refunded).
func TestHTTPSUpstreamPrivateCA(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey, clientPool := writeCert(t, dir, "gateway")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok from "+r.TLS.PeerCertificates[0].Subject.CommonName+" over "+r.Proto)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL":              up.URL,
		"CREDITGATE_ORGS":                      "acme:limit=1000,keys=acme-key",
		"CREDITGATE_UPSTREAM_CA_FILE":          caFile,
		"CREDITGATE_UPSTREAM_CLIENT_CERT_FILE": clientCert,
		"CREDITGATE_UPSTREAM_CLIENT_KEY_FILE":  clientKey,
	}
	gw := startGateway(t, vars)
	resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "acme-key")
	if resp.StatusCode != 200 || body != "ok from gateway over HTTP/2.0" || resp.Header.Get("X-Credits-Charged") != "1" {
		t.Fatalf("through the private CA: %d %q charged %s", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"))
	}
	vars["CREDITGATE_UPSTREAM_HTTP2"] = "false"
	gw1 := startGateway(t, vars)
	resp, body = call(t, http.DefaultClient, "GET", gw1.base+"/crm/v2/users", "acme-key")
	if resp.StatusCode != 200 || body != "ok from gateway over HTTP/1.1" || resp.Header.Get("X-Credits-Charged") != "1" {
		t.Fatalf("with CREDITGATE_UPSTREAM_HTTP2=false: %d %q charged %s", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"))
	}
	delete(vars, "CREDITGATE_UPSTREAM_HTTP2")
	delete(vars, "CREDITGATE_UPSTREAM_CA_FILE")
	gw2 := startGateway(t, vars)
	resp, body = call(t, http.DefaultClient, "GET", gw2.base+"/crm/v2/users", "acme-key")
	if resp.StatusCode != 502 || resp.Header.Get("X-Credits-Charged") != "0" {
		t.Fatalf("without the CA: %d %s", resp.StatusCode, body)
	}
}
