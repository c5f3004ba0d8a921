package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/jetsource/jetsource/internal/aggregator"
)

func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("NATS_URL", "nats://a:4222,nats://b:4222")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
	t.Setenv("AGGREGATOR_LEASE_TTL", "7s")
	t.Setenv("LOG_LEVEL", "debug")
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.URL != "nats://a:4222,nats://b:4222" || cfg.OTLPEndpoint != "http://collector:4318/v1/traces" || cfg.LeaseTTL != 7*time.Second ||
		cfg.Partitions != 16 || cfg.Replicas != 1 || cfg.ResultsMaxAge != 24*time.Hour || cfg.MetricsAddr != ":9090" || cfg.LogLevel.String() != "DEBUG" {
		t.Fatalf("config %+v", cfg)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Setenv("JETSOURCE_PARTITIONS", "0")
	t.Setenv("JETSOURCE_REPLICAS", "2")
	t.Setenv("AGGREGATOR_LEASE_TTL", "10ms")
	t.Setenv("AGGREGATOR_MAX_RETRIES", "-1")
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	for _, want := range []string{"partitions is 0", "replicas is 2", "AGGREGATOR_LEASE_TTL is 10ms", "AGGREGATOR_MAX_RETRIES is -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
}

func TestZeroSwitchesCountsOff(t *testing.T) {
	t.Setenv("AGGREGATOR_SNAPSHOT_EVERY", "0")
	t.Setenv("AGGREGATOR_CACHE_SIZE", "0")
	t.Setenv("AGGREGATOR_MAX_RETRIES", "0")
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	svc := cfg.service()
	if svc.SnapshotEvery != aggregator.None || svc.CacheSize != aggregator.None || svc.MaxRetries != aggregator.None {
		t.Fatalf("0 in the environment gave %+v", svc)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
