// Requests a client_credentials token as CLIENT_ID with Go's crypto/tls holding every CERT KEY
// pair in tls.Config.Certificates, in the order given, and prints one JSON line: the HTTP
// status and body. crypto/tls chooses the certificate it sends: the first one that the
// server's CertificateRequest allows (signature algorithms and, when the server lists CA
// names, a certificate issued by one of them), or none at all.
//
//	certificates TOKEN_URL CLIENT_ID CA CERT KEY [CERT KEY ...]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

type result struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 6 || len(os.Args)%2 != 0 {
		fmt.Fprintln(os.Stderr, "usage: certificates TOKEN_URL CLIENT_ID CA CERT KEY [CERT KEY ...]")
		os.Exit(2)
	}
	tokenURL, clientID, caFile := os.Args[1], os.Args[2], os.Args[3]
	var certificates []tls.Certificate
	for i := 4; i < len(os.Args); i += 2 {
		certificate, err := tls.LoadX509KeyPair(os.Args[i], os.Args[i+1])
		if err != nil {
			fail(err)
		}
		certificates = append(certificates, certificate)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail(fmt.Errorf("no certificate in %s", caFile))
	}
	client := &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{Certificates: certificates, RootCAs: roots},
		},
	}
	response, err := client.PostForm(tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}})
	if err != nil {
		fail(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(result{Status: response.StatusCode, Body: string(body)}); err != nil {
		fail(err)
	}
}
