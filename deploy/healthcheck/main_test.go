package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/notready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if err := probe(t.Context(), srv.URL+"/readyz"); err != nil {
		t.Errorf("ready endpoint: %v", err)
	}
	if err := probe(t.Context(), srv.URL+"/notready"); err == nil {
		t.Error("503 accepted as healthy")
	}
	if err := probe(t.Context(), srv.URL+"/missing"); err == nil {
		t.Error("404 accepted as healthy")
	}
	srv.Close()
	if err := probe(t.Context(), srv.URL+"/readyz"); err == nil {
		t.Error("closed server accepted as healthy")
	}
}
