package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// SourcesConfig says how the node reaches the hosts services name as their
// source (source.location archives and source.git repositories); which
// hosts it may reach is policy's allowed_sources.
//
//	sources:
//	  ca_file: /etc/andromeda/sources-ca.pem
type SourcesConfig struct {
	// CAFile is a PEM file of certificate authorities the node trusts,
	// beside the system's, when it fetches a source: for a private git
	// server or archive host with its own CA. Read at start; a file that
	// cannot be read or holds no certificate stops the node. Default ""
	// (the system's roots alone).
	CAFile string `json:"ca_file" yaml:"ca_file"`
}

// sourceFetchTimeout bounds one request of a source fetch (and FetchGit's
// whole fetch).
const sourceFetchTimeout = 2 * time.Minute

// sourcesClient returns the client source fetches use: the system's roots
// plus c.CAFile's.
func (c SourcesConfig) client() (*http.Client, error) {
	if c.CAFile == "" {
		return &http.Client{Timeout: sourceFetchTimeout}, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("sources.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("sources.ca_file: %s holds no PEM certificate", c.CAFile)
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("sources.ca_file: the default HTTP transport is not an *http.Transport")
	}
	tr = tr.Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: sourceFetchTimeout}, nil
}
