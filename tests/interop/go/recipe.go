package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func fetchToken(ctx context.Context, issuer, clientID, certFile, keyFile, caFile string) (*oauth2.Token, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in " + caFile)
	}
	httpClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots},
	}}
	config := clientcredentials.Config{
		ClientID: clientID,
		TokenURL: issuer + "/token",
		// client_id in the body: the default first tries a Basic header with an empty secret.
		AuthStyle: oauth2.AuthStyleInParams,
	}
	return config.Token(context.WithValue(ctx, oauth2.HTTPClient, httpClient))
}
