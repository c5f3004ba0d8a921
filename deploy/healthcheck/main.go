// Command healthcheck probes a JetSource service's health endpoint from
// inside its container, where the distroless image has no shell, curl or
// wget. It exits 0 when the URL answers 2xx and 1 otherwise. Compose uses
// it; Kubernetes probes the endpoints itself.
//
//	healthcheck [URL]   (default http://127.0.0.1:9090/readyz)
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
)

const defaultURL = "http://127.0.0.1:9090/readyz"

func main() {
	url := defaultURL
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := probe(ctx, url); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// probe reports an error unless a GET of url answers with a 2xx status.
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
