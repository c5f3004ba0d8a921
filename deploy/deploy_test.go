// Package deploy_test validates deploy/ offline: it renders the kustomize
// base and overlays and decodes every object strictly into the Kubernetes
// API types, loads the compose file with the compose-spec loader, and runs
// the NATS configuration through nats-server's own parser. Each test also
// asserts the invariants the manifests promise (hardening, probes, one
// Deployment, PDB and ScaledObject per projection, R3 in production, ...).
package deploy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fixed by the wire contract and the binaries; the manifests must agree.
const (
	partitions        = 16
	metricsPort       = 9090
	eventsStream      = "ORDERS_EVENTS"
	defaultDrainAfter = 10 * time.Second // AGGREGATOR_DRAIN_TIMEOUT's default
)

// projections are the read models, each its own projector Deployment.
var projections = []string{"order_summary", "order_history", "sales_daily"}

// deploymentName is the Kubernetes name of a projection's Deployment,
// ScaledObject and PDB: projector-order-summary for order_summary.
func deploymentName(projection string) string {
	return "projector-" + strings.ReplaceAll(projection, "_", "-")
}

// The environment each binary reads, as documented in docs/operations.md.
// Manifests may set nothing else; the variables the binaries map (config.Env
// bindings) must be in these lists (TestEnvCatalogueMatchesSource).
var (
	sharedEnv = []string{
		"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_INBOX_PREFIX",
		"NATS_TLS_CERT", "NATS_TLS_KEY", "NATS_TLS_CA",
		"JETSOURCE_PARTITIONS", "LOG_LEVEL", "METRICS_ADDR", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	}
	aggregatorEnv = append(slices.Clone(sharedEnv),
		"JETSOURCE_REPLICAS", "JETSOURCE_DUPLICATE_WINDOW", "JETSOURCE_RESULTS_MAX_AGE",
		"AGGREGATOR_CACHE_SIZE", "AGGREGATOR_SNAPSHOT_EVERY", "AGGREGATOR_MAX_RETRIES",
		"AGGREGATOR_ACK_WAIT", "AGGREGATOR_MAX_IN_FLIGHT", "AGGREGATOR_DRAIN_TIMEOUT", "AGGREGATOR_REPLICA_ID", "AGGREGATOR_LEASE_TTL",
	)
	projectorEnv = append(slices.Clone(sharedEnv),
		"JETSOURCE_REPLICAS", "JETSOURCE_DUPLICATE_WINDOW", "PROJECTOR_PROJECTION", "DATABASE_URL", "JETSOURCE_SCHEMA",
		"PROJECTOR_BATCH_SIZE", "PROJECTOR_MAX_ATTEMPTS", "PROJECTOR_MIGRATE",
	)
	queryEnv = append(slices.Clone(sharedEnv), "QUERY_TIMEOUT")
)

// envFor returns the variables a binary reads, by binary name.
func envFor(t *testing.T, binary string) []string {
	t.Helper()
	switch binary {
	case "aggregator":
		return aggregatorEnv
	case "projector":
		return projectorEnv
	case "query":
		return queryEnv
	}
	t.Fatalf("unknown binary %q", binary)
	return nil
}

// checkEnv reports variables the binary does not read and a METRICS_ADDR
// whose port is not the one the probes, Services and healthchecks use.
func checkEnv(t *testing.T, where, binary string, env map[string]string) {
	t.Helper()
	known := envFor(t, binary)
	for name, value := range env {
		if !slices.Contains(known, name) {
			t.Errorf("%s: %s sets %s, which %s does not read", where, binary, name, binary)
		}
		if name == "METRICS_ADDR" && portOf(value) != metricsPort {
			t.Errorf("%s: METRICS_ADDR=%q, but probes and Services use port %d", where, value, metricsPort)
		}
	}
}

// portOf returns the port of a host:port address, or -1.
func portOf(addr string) int {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return -1
	}
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		return -1
	}
	return p
}

// drainTimeout is AGGREGATOR_DRAIN_TIMEOUT as the aggregator would read it.
func drainTimeout(t *testing.T, where string, env map[string]string) time.Duration {
	t.Helper()
	v, ok := env["AGGREGATOR_DRAIN_TIMEOUT"]
	if !ok {
		return defaultDrainAfter
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Errorf("%s: AGGREGATOR_DRAIN_TIMEOUT=%q is not a positive duration", where, v)
		return defaultDrainAfter
	}
	return d
}

// TestEnvCatalogueMatchesSource keeps the catalogue above (and so the docs
// and manifests) in step with the variables a binary maps (config.Env
// bindings such as env.Int("NAME", ...)), in its cmd/ package and the
// module packages that package imports (daemon, ...). A binary not in this
// tree yet is checked once it lands.
func TestEnvCatalogueMatchesSource(t *testing.T) {
	for _, binary := range []string{"aggregator", "projector", "query"} {
		dir := filepath.Join("..", "cmd", binary)
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			t.Logf("%s not in this tree; its variables are checked against the catalogue only", dir)
			continue
		}
		vars := mappedVars(t, dir)
		if len(vars) == 0 {
			t.Errorf("no variables found for %s", binary)
		}
		for _, name := range vars {
			if !slices.Contains(envFor(t, binary), name) {
				t.Errorf("%s reads %s, which the catalogue (and docs/operations.md) lacks", binary, name)
			}
		}
	}
}

const modulePath = "github.com/jetsource/jetsource/"

var (
	// bindings are config.Env's methods that bind a variable.
	bindings = map[string]bool{"String": true, "URL": true, "Secret": true, "Int": true, "Int64": true, "Bool": true, "Duration": true, "Level": true}
	envName  = regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)
)

// mappedVars returns the variables bound in the non-test Go files of the
// package in dir and of the module packages it imports: the upper-case
// string literals that open a call of a config.Env binding method.
func mappedVars(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	fset := token.NewFileSet()
	parse := func(dir string) (imports []string) {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				if p, err := strconv.Unquote(imp.Path.Value); err == nil && strings.HasPrefix(p, modulePath) {
					imports = append(imports, strings.TrimPrefix(p, modulePath))
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				lit, isLit := call.Args[0].(*ast.BasicLit)
				if !ok || !isLit || lit.Kind != token.STRING || !bindings[sel.Sel.Name] {
					return true
				}
				if name, err := strconv.Unquote(lit.Value); err == nil && envName.MatchString(name) {
					names = append(names, name)
				}
				return true
			})
		}
		return imports
	}
	for _, pkg := range parse(dir) {
		parse(filepath.Join("..", filepath.FromSlash(pkg)))
	}
	return names
}

// TestOperationsDocCoversEnv: every variable in the catalogue is documented.
func TestOperationsDocCoversEnv(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Concat(aggregatorEnv, projectorEnv, queryEnv)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not document `%s`", name)
		}
	}
}
