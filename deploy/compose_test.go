package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestCompose loads compose.yaml with the compose-spec reference loader
// (schema validation, interpolation, YAML anchors and merges, consistency
// checks; offline) and checks the stack it describes.
func TestCompose(t *testing.T) {
	details := types.ConfigDetails{
		WorkingDir:  mustAbs(t, "."),
		ConfigFiles: []types.ConfigFile{{Filename: mustAbs(t, "compose.yaml")}},
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(t.Context(), details)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}

	want := append(slices.Clone(clusterNodes), "postgres", "streams", "aggregator", "query")
	for _, p := range projections {
		want = append(want, deploymentName(p))
	}
	if got := project.ServiceNames(); !sameSet(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}

	for name, svc := range project.Services {
		// streams is a job that runs once; the others are probed.
		if name != "streams" && (svc.HealthCheck == nil || svc.HealthCheck.Disable || len(svc.HealthCheck.Test) == 0) {
			t.Errorf("%s: no healthcheck", name)
		}
		for dep, cfg := range svc.DependsOn {
			want := types.ServiceConditionHealthy
			if dep == "streams" {
				want = types.ServiceConditionCompletedSuccessfully
			}
			if cfg.Condition != want {
				t.Errorf("%s: depends on %s with condition %q; want %s", name, dep, cfg.Condition, want)
			}
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind mount source: %v", name, err)
				}
			}
		}
	}

	for _, node := range clusterNodes {
		svc := project.Services[node]
		if got := value(svc.Environment["SERVER_NAME"]); got != node {
			t.Errorf("%s: SERVER_NAME=%q, want %q", node, got, node)
		}
		for _, conf := range []string{natsConf, "nats/auth.conf"} {
			if !mounts(svc, filepath.Join(mustAbs(t, "."), conf)) {
				t.Errorf("%s: does not mount %s", node, conf)
			}
		}
		for _, r := range authRoles {
			if value(svc.Environment["JETSOURCE_"+strings.ToUpper(r)+"_PASSWORD"]) == "" {
				t.Errorf("%s: no password for the NATS user %s", node, r)
			}
		}
		if !strings.HasSuffix(svc.Image, ":"+natsServerVersion(t)+"-alpine") {
			t.Errorf("%s: image %s, want the nats-server version under test (%s)", node, svc.Image, natsServerVersion(t))
		}
	}

	for _, name := range append([]string{"aggregator"}, want[len(clusterNodes)+2:]...) {
		svc, ok := project.Services[name]
		if !ok {
			continue
		}
		binary, _, _ := strings.Cut(name, "-")
		checkComposeService(t, name, binary, svc)
	}
	for _, p := range projections {
		svc := project.Services[deploymentName(p)]
		if got := value(svc.Environment["PROJECTOR_PROJECTION"]); got != p {
			t.Errorf("%s: PROJECTOR_PROJECTION=%q, want %q", deploymentName(p), got, p)
		}
		if _, ok := svc.DependsOn["postgres"]; !ok {
			t.Errorf("%s: must wait for postgres", deploymentName(p))
		}
	}
	if got := value(project.Services["aggregator"].Environment["JETSOURCE_REPLICAS"]); got != "3" {
		t.Errorf("aggregator: JETSOURCE_REPLICAS=%q; the compose cluster has 3 nodes", got)
	}

	// The operator's job creates the streams the services verify, with
	// their settings, before they start.
	streams := project.Services["streams"]
	if b := streams.Build; b == nil || b.Args["BINARY"] == nil || *b.Args["BINARY"] != "orderctl" || !slices.Equal(streams.Command, types.ShellCommand{"streams", "apply"}) {
		t.Errorf("streams: must run orderctl streams apply, built from deploy/Dockerfile with BINARY=orderctl")
	}
	roles := map[string]string{"streams": "operator", "aggregator": "aggregator", "query": "query"}
	for _, p := range projections {
		roles[deploymentName(p)] = "projector"
	}
	for name, role := range roles {
		env := project.Services[name].Environment
		if value(env["NATS_USER"]) != role || value(env["NATS_PASSWORD"]) == "" || value(env["NATS_INBOX_PREFIX"]) != "_INBOX."+role {
			t.Errorf("%s: must connect as the NATS user %s (NATS_USER, NATS_PASSWORD, NATS_INBOX_PREFIX=_INBOX.%s)", name, role, role)
		}
		if name == "streams" {
			continue
		}
		// The aggregator and the projectors verify the stream replicas.
		if name != "query" && value(env["JETSOURCE_REPLICAS"]) != value(streams.Environment["JETSOURCE_REPLICAS"]) {
			t.Errorf("%s: JETSOURCE_REPLICAS differs from the streams job's", name)
		}
		if _, ok := project.Services[name].DependsOn["streams"]; !ok {
			t.Errorf("%s: must wait for the streams job", name)
		}
	}
}

// checkComposeService: a JetSource service built from deploy/Dockerfile,
// hardened, configured only with variables its binary reads, probed by the
// image's healthcheck on the metrics port, and given time to drain.
func checkComposeService(t *testing.T, name, binary string, svc types.ServiceConfig) {
	t.Helper()
	if svc.Build == nil || svc.Build.Dockerfile != "deploy/Dockerfile" || svc.Build.Args["BINARY"] == nil || *svc.Build.Args["BINARY"] != binary {
		t.Errorf("%s: must build deploy/Dockerfile with BINARY=%s", name, binary)
	} else if _, err := os.Stat(filepath.Join(svc.Build.Context, "cmd")); err != nil {
		t.Errorf("%s: build context %s is not the repository root: %v", name, svc.Build.Context, err)
	}
	if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("%s: want read_only, cap_drop ALL and no-new-privileges", name)
	}

	env := map[string]string{}
	for k, v := range svc.Environment {
		env[k] = value(v)
	}
	checkEnv(t, name, binary, env)
	hosts := natsURLHosts(t, env["NATS_URL"])
	slices.Sort(hosts)
	if !slices.Equal(hosts, clusterNodes) {
		t.Errorf("%s: NATS_URL hosts %v, want all nodes %v", name, hosts, clusterNodes)
	}

	test := svc.HealthCheck.Test
	if len(test) != 3 || test[0] != "CMD" || test[1] != "/healthcheck" || !strings.HasSuffix(test[2], ":9090/readyz") {
		t.Errorf("%s: healthcheck %v; want [CMD /healthcheck http://127.0.0.1:9090/readyz]", name, test)
	}

	drain := defaultDrainAfter
	if binary == "aggregator" {
		drain = drainTimeout(t, name, env)
	}
	if svc.StopGracePeriod == nil || time.Duration(*svc.StopGracePeriod) <= drain {
		t.Errorf("%s: stop_grace_period must exceed the %s drain timeout", name, drain)
	}
}

func value(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}

func mounts(svc types.ServiceConfig, source string) bool {
	for _, v := range svc.Volumes {
		if v.Source == source {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// natsURLHosts returns the hosts of a comma-separated NATS_URL.
func natsURLHosts(t *testing.T, natsURL string) []string {
	t.Helper()
	var hosts []string
	for _, member := range strings.Split(natsURL, ",") {
		u, err := url.Parse(member)
		if err != nil || u.Hostname() == "" {
			t.Errorf("NATS_URL member %q: %v", member, err)
			continue
		}
		hosts = append(hosts, u.Hostname())
	}
	return hosts
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(fmt.Errorf("abs %s: %w", path, err))
	}
	return abs
}
