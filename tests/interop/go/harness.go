// Runs the README's Go recipe (recipe.go) and prints one JSON line: the token, or the error
// x/oauth2 returned.
//
//	harness ISSUER CLIENT_ID CERT KEY CA
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/oauth2"
)

type result struct {
	OK          bool   `json:"ok"`
	AccessToken string `json:"access_token,omitempty"`
	TokenType   string `json:"token_type,omitempty"`
	ErrorType   string `json:"error_type,omitempty"`
	Message     string `json:"message,omitempty"`
	Status      int    `json:"status,omitempty"`
	Body        string `json:"body,omitempty"`
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: harness ISSUER CLIENT_ID CERT KEY CA")
		os.Exit(2)
	}
	var out result
	token, err := fetchToken(context.Background(), os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	if err == nil {
		out = result{OK: true, AccessToken: token.AccessToken, TokenType: token.TokenType}
	} else {
		out = result{ErrorType: fmt.Sprintf("%T", err), Message: err.Error()}
		var retrieveError *oauth2.RetrieveError
		if errors.As(err, &retrieveError) {
			out.Status = retrieveError.Response.StatusCode
			out.Body = string(retrieveError.Body)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
