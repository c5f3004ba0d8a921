package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/mod/modfile"
	"sigs.k8s.io/yaml"
)

const natsConf = "nats/jetsource.conf"

// clusterNodes are the server names and route hosts of the three-node
// cluster; compose.yaml names its NATS services the same.
var clusterNodes = []string{"nats-0", "nats-1", "nats-2"}

// TestNATSClusterConfig parses and validates jetsource.conf with
// nats-server's own code, as each of the three nodes would load it.
func TestNATSClusterConfig(t *testing.T) {
	setRolePasswords(t)
	for _, node := range clusterNodes {
		t.Setenv("SERVER_NAME", node)
		opts, err := server.ProcessConfigFile(natsConf)
		if err != nil {
			t.Fatalf("%s as %s: %v", natsConf, node, err)
		}
		if opts.ServerName != node {
			t.Errorf("%s: server_name %q, want %q from SERVER_NAME", node, opts.ServerName, node)
		}
		if !opts.JetStream || opts.StoreDir == "" {
			t.Errorf("%s: JetStream must be enabled with a store_dir", node)
		}
		if !opts.SyncAlways {
			t.Errorf("%s: jetstream sync_interval must be always", node)
		}
		if opts.Port != 4222 || opts.HTTPPort != 8222 || opts.Cluster.Port != 6222 {
			t.Errorf("%s: ports client %d, monitoring %d, cluster %d; want 4222, 8222, 6222", node, opts.Port, opts.HTTPPort, opts.Cluster.Port)
		}
		if opts.Cluster.Name == "" {
			t.Errorf("%s: the cluster needs a name", node)
		}
		var hosts []string
		for _, r := range opts.Routes {
			hosts = append(hosts, r.Hostname())
			if r.Port() != "6222" {
				t.Errorf("%s: route %s is not on the cluster port 6222", node, r)
			}
		}
		slices.Sort(hosts)
		if !slices.Equal(hosts, clusterNodes) {
			t.Errorf("%s: routes to %v, want the three nodes %v", node, hosts, clusterNodes)
		}
		if len(opts.Users) != len(authRoles) || opts.NoAuthUser != "" {
			t.Errorf("%s: %d users (no_auth_user %q); want the %d of auth.conf and no anonymous access", node, len(opts.Users), opts.NoAuthUser, len(authRoles))
		}
		if opts.MaxPayload < 64*1024 {
			t.Errorf("%s: max_payload %d is below the 64 KiB command limit", node, opts.MaxPayload)
		}

		// NewServer runs the server's option validation (cluster, JetStream,
		// limits) without listening or touching the store.
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: nats-server rejects the configuration: %v", node, err)
		}
		s.Shutdown()
	}
}

// TestNATSHelmValues: values.yaml is YAML for the official chart (1.x)
// describing a three-replica JetStream cluster on PVCs with fsync on every
// write; the jetstream merge block must be valid server configuration, and
// the image the nats-server version this module's tests run.
func TestNATSHelmValues(t *testing.T) {
	data, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(data, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	get := func(path string) any {
		var v any = values
		for _, key := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[key]
		}
		return v
	}
	for path, want := range map[string]any{
		"config.cluster.enabled":                 true,
		"config.cluster.replicas":                float64(3),
		"config.jetstream.enabled":               true,
		"config.jetstream.fileStore.enabled":     true,
		"config.jetstream.fileStore.pvc.enabled": true,
		"config.jetstream.memoryStore.enabled":   false,
		"config.jetstream.merge.sync_interval":   "always",
		"config.monitor.enabled":                 true,
		"config.monitor.port":                    float64(8222),
		"container.image.tag":                    natsServerVersion(t) + "-alpine",
	} {
		if got := get(path); got != want {
			t.Errorf("values.yaml %s = %v (%T), want %v", path, got, got, want)
		}
	}
	// Keyed by topology key, which contains dots.
	spread, _ := get("podTemplate.topologySpreadConstraints").(map[string]any)
	if _, ok := spread["kubernetes.io/hostname"]; !ok {
		t.Error("values.yaml: NATS pods must spread over nodes (podTemplate.topologySpreadConstraints.kubernetes.io/hostname)")
	}

	// The chart renders config.jetstream.merge into the server's jetstream
	// block; NATS configuration is a superset of JSON.
	merge, _ := get("config.jetstream.merge").(map[string]any)
	js := map[string]any{"store_dir": t.TempDir()}
	for k, v := range merge {
		js[k] = v
	}
	conf, err := json.Marshal(map[string]any{"jetstream": js})
	if err != nil {
		t.Fatal(err)
	}
	var opts server.Options
	if err := opts.ProcessConfigString(string(conf)); err != nil {
		t.Fatalf("config.jetstream.merge is not valid server configuration: %v", err)
	}
	if !opts.SyncAlways {
		t.Error("config.jetstream.merge does not turn on SyncAlways")
	}
	checkHelmSecurity(t, get)
}

// checkHelmSecurity: values.yaml includes auth.conf with every password
// from the Secret nats-jetsource-users, and turns on TLS for clients and
// routes with the Secrets of certificates.yaml. The chart renders a TLS
// block as cert_file/key_file under /etc/nats-certs/<name>, plus ca_file and
// verify when ca is set; the rendered configuration, with generated
// certificates in place of the Secrets, must load in nats-server.
func checkHelmSecurity(t *testing.T, get func(string) any) {
	t.Helper()
	if got := get("config.merge.00$include"); got != "auth.conf" {
		t.Errorf("values.yaml config.merge.00$include = %v, want auth.conf", got)
	}
	env, _ := get("container.env").(map[string]any)
	for _, r := range authRoles {
		name := "JETSOURCE_" + strings.ToUpper(r) + "_PASSWORD"
		v, _ := env[name].(map[string]any)
		ref, _ := v["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
		if ref["name"] != "nats-jetsource-users" || ref["key"] != r {
			t.Errorf("values.yaml container.env.%s must come from the Secret nats-jetsource-users, key %s; got %v", name, r, env[name])
		}
	}
	secrets := certificateSecrets(t)
	for _, block := range []string{"config.nats.tls", "config.cluster.tls"} {
		if get(block+".enabled") != true {
			t.Errorf("values.yaml %s.enabled must be true", block)
		}
		name, _ := get(block + ".secretName").(string)
		if !slices.Contains(secrets, name) {
			t.Errorf("values.yaml %s.secretName %q is not a Certificate of certificates.yaml (%v)", block, name, secrets)
		}
	}
	if get("config.cluster.tls.ca") == nil {
		t.Error("values.yaml config.cluster.tls needs ca, so routes verify each other")
	}

	dir := t.TempDir()
	writeTestCerts(t, dir)
	tlsBlock := func(block string) string {
		out := fmt.Sprintf("cert_file: %q\nkey_file: %q\n", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if get(block+".ca") != nil {
			out += fmt.Sprintf("ca_file: %q\nverify: true\n", filepath.Join(dir, "ca.crt"))
		}
		return out
	}
	auth, err := os.ReadFile("nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("include auth.conf;\nport: 4222\ntls {\n%s}\ncluster {\n name: nats\n port: 6222\n tls {\n%s}\n}\n",
		tlsBlock("config.nats.tls"), tlsBlock("config.cluster.tls"))
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	setRolePasswords(t)
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the configuration the chart renders from values.yaml: %v", err)
	}
	if opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil || len(opts.Users) != len(authRoles) {
		t.Error("the rendered configuration lacks client TLS, route TLS or the users of auth.conf")
	}
}

// certificateSecrets are the Secrets of certificates.yaml's Certificates;
// each must name the hosts the prod overlay's NATS_URL uses.
func certificateSecrets(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("nats/certificates.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var cert struct {
			Kind string `json:"kind"`
			Spec struct {
				SecretName string   `json:"secretName"`
				DNSNames   []string `json:"dnsNames"`
				IssuerRef  struct {
					Name string `json:"name"`
				} `json:"issuerRef"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cert); err != nil {
			t.Fatalf("certificates.yaml: %v", err)
		}
		if cert.Kind != "Certificate" || cert.Spec.SecretName == "" || cert.Spec.IssuerRef.Name == "" {
			t.Errorf("certificates.yaml: %+v is not a Certificate with a secretName and an issuer", cert)
			continue
		}
		if !slices.Contains(cert.Spec.DNSNames, "*.nats-headless.nats.svc.cluster.local") {
			t.Errorf("certificates.yaml: %s does not cover the pods behind nats-headless (the prod NATS_URL)", cert.Spec.SecretName)
		}
		names = append(names, cert.Spec.SecretName)
	}
	return names
}

// writeTestCerts writes a self-signed certificate and key as tls.crt,
// tls.key and ca.crt into dir.
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats"}, DNSNames: []string{"nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "ca.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// natsServerVersion is the nats-server version this module builds and
// tests against, from go.mod (v-less, e.g. 2.14.9).
func natsServerVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range mod.Require {
		if req.Mod.Path == "github.com/nats-io/nats-server/v2" {
			return strings.TrimPrefix(req.Mod.Version, "v")
		}
	}
	t.Fatal("go.mod does not require nats-server")
	return ""
}

// authRoles are the users of auth.conf, one per role of docs/security.md.
var authRoles = []string{"aggregator", "projector", "publisher", "payments", "reader", "query", "operator"}

// TestNATSAuthConfig loads auth.conf on its own, as
// `nats-server -js -c deploy/nats/auth.conf` does: it refuses to load
// while a password variable is unset, and then defines exactly one user per
// role in the JETSOURCE account, no anonymous user, and a private inbox per
// role. test/integration's TestNATSPermissions proves what each may do.
func TestNATSAuthConfig(t *testing.T) {
	if _, err := server.ProcessConfigFile("nats/auth.conf"); err == nil || !strings.Contains(err.Error(), "JETSOURCE_") {
		t.Fatalf("auth.conf loaded without the password variables: %v", err)
	}
	setRolePasswords(t)
	opts, err := server.ProcessConfigFile("nats/auth.conf")
	if err != nil {
		t.Fatalf("auth.conf: %v", err)
	}
	if opts.NoAuthUser != "" {
		t.Errorf("no_auth_user %q lets anonymous clients in", opts.NoAuthUser)
	}
	var users []string
	for _, u := range opts.Users {
		users = append(users, u.Username)
		if u.Account == nil || u.Account.Name != "JETSOURCE" {
			t.Errorf("user %s is not in the JETSOURCE account", u.Username)
		}
		if u.Password != u.Username+"-password" {
			t.Errorf("user %s does not take its password from JETSOURCE_%s_PASSWORD", u.Username, strings.ToUpper(u.Username))
		}
		p := u.Permissions
		if p == nil || p.Publish == nil || p.Subscribe == nil || len(p.Publish.Deny) > 0 || len(p.Subscribe.Deny) > 0 {
			t.Errorf("user %s: permissions must be allow lists for publish and subscribe", u.Username)
			continue
		}
		if !slices.Contains(p.Subscribe.Allow, "_INBOX."+u.Username+".>") || slices.Contains(p.Subscribe.Allow, "_INBOX.>") {
			t.Errorf("user %s must receive replies on _INBOX.%s.> and no other inbox: %v", u.Username, u.Username, p.Subscribe.Allow)
		}
	}
	slices.Sort(users)
	want := slices.Sorted(slices.Values(authRoles))
	if !slices.Equal(users, want) {
		t.Errorf("users %v, want one per role %v", users, want)
	}
	opts.JetStream, opts.StoreDir, opts.Port = true, t.TempDir(), -1
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server -js rejects auth.conf: %v", err)
	}
	s.Shutdown()
}

// setRolePasswords sets JETSOURCE_<ROLE>_PASSWORD to <role>-password.
func setRolePasswords(t *testing.T) {
	t.Helper()
	for _, r := range authRoles {
		t.Setenv("JETSOURCE_"+strings.ToUpper(r)+"_PASSWORD", r+"-password")
	}
}
