package deploy_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// variant is a kustomization to render and what it must produce.
type variant struct {
	dir       string
	namespace string
	// keda: the projectors scale with KEDA ScaledObjects; otherwise each
	// projector runs exactly one replica.
	keda              bool
	minProjectors     int32 // ScaledObject minReplicaCount
	aggregatorReplica int32
	queryReplicas     int32
	streamReplicas    string // JETSOURCE_REPLICAS; "" for the binary's default (1)
	natsMembers       int    // servers listed in NATS_URL
	spread            bool   // pods spread over nodes
	taggedImages      bool   // images carry an explicit tag or digest
	// Secrets the variant references without rendering (created out of band).
	externalSecrets []string
}

var variants = []variant{
	{
		dir: "k8s/base", keda: true, minProjectors: 1, aggregatorReplica: 2, queryReplicas: 2, natsMembers: 1,
		externalSecrets: []string{"jetsource-postgres", "jetsource-nats-users"},
	},
	{
		dir: "k8s/overlays/dev", namespace: "jetsource-dev", aggregatorReplica: 1, queryReplicas: 1,
		streamReplicas: "1", natsMembers: 1, taggedImages: true,
	},
	{
		dir: "k8s/overlays/prod", namespace: "jetsource", keda: true, minProjectors: 2, aggregatorReplica: 2, queryReplicas: 2,
		streamReplicas: "3", natsMembers: 3, spread: true, taggedImages: true,
		externalSecrets: []string{"jetsource-postgres", "jetsource-nats-users"},
	},
}

func TestKustomize(t *testing.T) {
	for _, v := range variants {
		t.Run(strings.ReplaceAll(v.dir, "/", "_"), func(t *testing.T) {
			t.Parallel()
			objs := render(t, v.dir)
			objs.checkMetadata(t, v)
			objs.checkWorkloads(t, v)
			objs.checkAggregator(t, v)
			objs.checkQuery(t, v)
			for _, p := range projections {
				objs.checkProjection(t, v, p)
			}
			objs.checkSetupJob(t, v)
			objs.checkSelectors(t)
		})
	}
}

// objects is one rendered kustomization decoded into typed API objects.
type objects struct {
	dir             string
	deployments     map[string]*appsv1.Deployment
	jobs            map[string]*batchv1.Job
	pdbs            map[string]*policyv1.PodDisruptionBudget
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	scaledObjects   map[string]*ScaledObject
	all             []metav1.Object
	// envs holds each Deployment's resolved environment (checkWorkloads).
	envs map[string]map[string]string
}

// render builds dir with the kustomize API, on disk and offline, and decodes
// each object strictly into its Go type: an unknown field (a typo, a field
// at the wrong level), a duplicate field, a wrongly typed value or a
// kind/apiVersion this test does not know fails the test.
func render(t *testing.T, dir string) *objects {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	o := &objects{
		dir:             dir,
		deployments:     map[string]*appsv1.Deployment{},
		jobs:            map[string]*batchv1.Job{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		services:        map[string]*corev1.Service{},
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		scaledObjects:   map[string]*ScaledObject{},
		envs:            map[string]map[string]string{},
	}
	for _, res := range resources.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s %s: %v", dir, res.GetKind(), res.GetName(), err)
		}
		if err := o.add(res.GetApiVersion(), res.GetKind(), data); err != nil {
			t.Errorf("%s: %s %s: %v", dir, res.GetKind(), res.GetName(), err)
		}
	}
	return o
}

func (o *objects) add(apiVersion, kind string, data []byte) error {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return decodeInto(data, o.deployments, &o.all)
	case "batch/v1 Job":
		return decodeInto(data, o.jobs, &o.all)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(data, o.pdbs, &o.all)
	case "v1 Service":
		return decodeInto(data, o.services, &o.all)
	case "v1 ConfigMap":
		return decodeInto(data, o.configMaps, &o.all)
	case "v1 Secret":
		return decodeInto(data, o.secrets, &o.all)
	case "v1 ServiceAccount":
		return decodeInto(data, o.serviceAccounts, &o.all)
	case "keda.sh/v1alpha1 ScaledObject":
		return decodeInto(data, o.scaledObjects, &o.all)
	}
	return fmt.Errorf("unknown kind %s %s: add it to the test with its Go type", apiVersion, kind)
}

// decodeInto strictly decodes data into a new T and files it by name.
func decodeInto[T any, PT interface {
	*T
	metav1.Object
}](data []byte, into map[string]PT, all *[]metav1.Object) error {
	obj := PT(new(T))
	if err := decodeStrict(data, obj); err != nil {
		return err
	}
	into[obj.GetName()] = obj
	*all = append(*all, obj)
	return nil
}

// decodeStrict decodes JSON as the API server's strict field validation
// does: case-sensitive field names, no unknown or duplicate fields.
func decodeStrict(data []byte, into any) error {
	strict, err := sigsjson.UnmarshalStrict(data, into)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// checkMetadata: valid names, labels and namespaces everywhere.
func (o *objects) checkMetadata(t *testing.T, v variant) {
	for _, obj := range o.all {
		name := obj.GetName()
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			t.Errorf("%s: name %q: %s", o.dir, name, msg)
		}
		if obj.GetNamespace() != v.namespace {
			t.Errorf("%s: %s is in namespace %q, want %q", o.dir, name, obj.GetNamespace(), v.namespace)
		}
		checkLabels(t, o.dir+": "+name, obj.GetLabels())
		if obj.GetLabels()["app.kubernetes.io/part-of"] != "jetsource" {
			t.Errorf("%s: %s lacks app.kubernetes.io/part-of=jetsource", o.dir, name)
		}
	}
	for name := range o.services {
		for _, msg := range validation.IsDNS1035Label(name) {
			t.Errorf("%s: Service name %q: %s", o.dir, name, msg)
		}
	}
	for name, cm := range o.configMaps {
		for key := range cm.Data {
			for _, msg := range validation.IsEnvVarName(key) {
				t.Errorf("%s: ConfigMap %s key %q: %s", o.dir, name, key, msg)
			}
		}
	}
}

func checkLabels(t *testing.T, where string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", where, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", where, k, v, msg)
		}
	}
}

// binaryOf names the binary a Deployment runs, from its image.
func binaryOf(d *appsv1.Deployment) string {
	image := d.Spec.Template.Spec.Containers[0].Image
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image[strings.LastIndex(image, "/")+1:]
}

// checkWorkloads asserts what holds for every Deployment: hardening,
// probes, resources, configuration references and graceful termination.
func (o *objects) checkWorkloads(t *testing.T, v variant) {
	want := []string{"aggregator", "query"}
	for _, p := range projections {
		want = append(want, deploymentName(p))
	}
	if got := slices.Sorted(maps.Keys(o.deployments)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("%s: Deployments %v, want %v", o.dir, got, want)
	}

	for name, d := range o.deployments {
		where := o.dir + ": Deployment " + name
		pod := d.Spec.Template.Spec

		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not select its own pod template (%v)", where, d.Spec.Selector, err)
		}
		checkLabels(t, where+" pod template", d.Spec.Template.Labels)

		if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
			psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
			psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod must set runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", where)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false", where)
		}
		if _, ok := o.serviceAccounts[pod.ServiceAccountName]; !ok {
			t.Errorf("%s: ServiceAccount %q is not rendered", where, pod.ServiceAccountName)
		}
		if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks must be false, or Kubernetes adds variables to the environment", where)
		}
		o.checkVolumes(t, where, v, pod.Volumes)

		if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
			t.Errorf("%s: want exactly one container", where)
			continue
		}
		c := pod.Containers[0]
		binary := binaryOf(d)
		if !slices.Contains([]string{"aggregator", "projector", "query"}, binary) {
			t.Errorf("%s: image %q is not jetsource/aggregator, jetsource/projector or jetsource/query", where, c.Image)
			continue
		}
		if v.taggedImages && !strings.Contains(c.Image, "@sha256:") && !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") {
			t.Errorf("%s: image %q has no tag or digest", where, c.Image)
		}

		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
			(sc.Privileged != nil && *sc.Privileged) ||
			(sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot) || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
			t.Errorf("%s: container %s must have readOnlyRootFilesystem, no privilege escalation, drop ALL capabilities and run as non-root", where, c.Name)
		}

		checkProbe(t, where+" liveness", c, c.LivenessProbe, "/healthz")
		checkProbe(t, where+" readiness", c, c.ReadinessProbe, "/readyz")
		if c.StartupProbe != nil {
			checkProbe(t, where+" startup", c, c.StartupProbe, "/healthz")
		}

		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim || req.Sign() <= 0 {
				t.Errorf("%s: %s request and limit must both be set", where, res)
			} else if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s exceeds limit %s", where, res, req.String(), lim.String())
			}
		}

		env := o.env(t, where, v, c)
		o.envs[name] = env
		checkEnv(t, where, binary, env)
		if n, ok := env["JETSOURCE_PARTITIONS"]; ok && n != strconv.Itoa(partitions) {
			t.Errorf("%s: JETSOURCE_PARTITIONS=%s, want %d (fixed when the streams were created)", where, n, partitions)
		}
		members := strings.Split(env["NATS_URL"], ",")
		if len(members) != v.natsMembers {
			t.Errorf("%s: NATS_URL lists %d servers, want %d", where, len(members), v.natsMembers)
		}
		for _, m := range members {
			if !strings.HasPrefix(m, "nats://") && !strings.HasPrefix(m, "tls://") {
				t.Errorf("%s: NATS_URL member %q is not a nats:// or tls:// URL", where, m)
			}
		}

		// The aggregator's drain bounds its shutdown; the projector has no
		// drain setting yet, and a batch commit takes well under the default.
		drain := defaultDrainAfter
		if binary == "aggregator" {
			drain = drainTimeout(t, where, env)
		}
		if grace := pod.TerminationGracePeriodSeconds; grace == nil || float64(*grace) <= drain.Seconds() {
			t.Errorf("%s: terminationGracePeriodSeconds must exceed the %s drain timeout", where, drain)
		}

		if v.spread && !spreadsOverNodes(pod) {
			t.Errorf("%s: pods must be spread over nodes (topologySpreadConstraints on kubernetes.io/hostname, DoNotSchedule, or required pod anti-affinity)", where)
		}
	}
}

// checkProbe: an HTTP GET of path on the metrics port.
func checkProbe(t *testing.T, where string, c corev1.Container, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet probe of %s", where, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: probes %s, want %s", where, p.HTTPGet.Path, path)
	}
	if port := containerPort(c, p.HTTPGet.Port); port != metricsPort {
		t.Errorf("%s: probes port %s (%d), want %d", where, p.HTTPGet.Port.String(), port, metricsPort)
	}
}

// containerPort resolves a port number or name against c's ports; -1 if
// a name is not declared.
func containerPort(c corev1.Container, port intstr.IntOrString) int {
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort)
		}
	}
	return -1
}

func spreadsOverNodes(pod corev1.PodSpec) bool {
	for _, c := range pod.TopologySpreadConstraints {
		if c.TopologyKey == corev1.LabelHostname && c.WhenUnsatisfiable == corev1.DoNotSchedule && c.LabelSelector != nil {
			return true
		}
	}
	a := pod.Affinity
	return a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

// checkVolumes: every Secret or ConfigMap volume exists in the render, is
// created out of band, or is optional.
func (o *objects) checkVolumes(t *testing.T, where string, v variant, volumes []corev1.Volume) {
	t.Helper()
	for _, vol := range volumes {
		switch {
		case vol.Secret != nil:
			optional := vol.Secret.Optional != nil && *vol.Secret.Optional
			o.checkSecret(t, where, v, vol.Secret.SecretName, optional)
		case vol.ConfigMap != nil:
			optional := vol.ConfigMap.Optional != nil && *vol.ConfigMap.Optional
			if _, ok := o.configMaps[vol.ConfigMap.Name]; !ok && !optional {
				t.Errorf("%s: volume %s: ConfigMap %q is not rendered", where, vol.Name, vol.ConfigMap.Name)
			}
		}
	}
}

func (o *objects) checkSecret(t *testing.T, where string, v variant, name string, optional bool) {
	t.Helper()
	if _, ok := o.secrets[name]; ok || optional || slices.Contains(v.externalSecrets, name) {
		return
	}
	t.Errorf("%s: Secret %q is neither rendered nor one the docs say to create", where, name)
}

// env resolves a container's environment as the kubelet would: envFrom
// ConfigMaps first, then env. Secret values appear as "secret:NAME/KEY".
func (o *objects) env(t *testing.T, where string, v variant, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := o.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %q is not rendered", where, from.ConfigMapRef.Name)
				continue
			}
			maps.Copy(env, cm.Data)
		case from.SecretRef != nil:
			t.Errorf("%s: envFrom a whole Secret hides which variables it sets; use secretKeyRef", where)
		}
	}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			t.Errorf("%s: env %q: %s", where, e.Name, msg)
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			o.checkSecret(t, where, v, ref.Name, ref.Optional != nil && *ref.Optional)
			if s, ok := o.secrets[ref.Name]; ok {
				_, inData := s.Data[ref.Key]
				_, inString := s.StringData[ref.Key]
				if !inData && !inString {
					t.Errorf("%s: env %s: Secret %s has no key %s", where, e.Name, ref.Name, ref.Key)
				}
			}
			env[e.Name] = "secret:" + ref.Name + "/" + ref.Key
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := o.configMaps[ref.Name]
			if !ok {
				t.Errorf("%s: env %s: ConfigMap %q is not rendered", where, e.Name, ref.Name)
				continue
			}
			env[e.Name] = cm.Data[ref.Key]
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = "resourceFieldRef"
		}
	}
	return env
}

func (o *objects) checkAggregator(t *testing.T, v variant) {
	d, ok := o.deployments["aggregator"]
	if !ok {
		return // reported by checkWorkloads
	}
	where := o.dir + ": aggregator"
	if d.Spec.Replicas == nil || *d.Spec.Replicas != v.aggregatorReplica {
		t.Errorf("%s: replicas %s, want %d", where, show(d.Spec.Replicas), v.aggregatorReplica)
	}
	env := o.envs[d.Name]
	if got := env["JETSOURCE_REPLICAS"]; got != v.streamReplicas {
		t.Errorf("%s: JETSOURCE_REPLICAS=%q, want %q", where, got, v.streamReplicas)
	}
	checkNATSRole(t, where, env, "aggregator")
	// Replicas that share an id would hold each other's partition leases.
	if id, ok := env["AGGREGATOR_REPLICA_ID"]; ok && id != "fieldRef:metadata.name" {
		t.Errorf("%s: AGGREGATOR_REPLICA_ID=%q is not unique per pod; use the pod name (fieldRef metadata.name) or leave it unset", where, id)
	}
	if len(o.pdbsFor(d)) != 1 {
		t.Errorf("%s: want exactly one PodDisruptionBudget, got %d", where, len(o.pdbsFor(d)))
	}
	if len(o.servicesFor(d)) != 1 {
		t.Errorf("%s: want exactly one metrics Service, got %d", where, len(o.servicesFor(d)))
	}
}

// checkQuery: the orders-query Deployment runs the query binary with its
// replicas, a PDB and a metrics Service, and reads no database.
func (o *objects) checkQuery(t *testing.T, v variant) {
	d, ok := o.deployments["query"]
	if !ok {
		return // reported by checkWorkloads
	}
	where := o.dir + ": query"
	if binaryOf(d) != "query" {
		t.Errorf("%s: runs %s, want query", where, binaryOf(d))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != v.queryReplicas {
		t.Errorf("%s: replicas %s, want %d", where, show(d.Spec.Replicas), v.queryReplicas)
	}
	if len(o.pdbsFor(d)) != 1 {
		t.Errorf("%s: want exactly one PodDisruptionBudget, got %d", where, len(o.pdbsFor(d)))
	}
	if len(o.servicesFor(d)) != 1 {
		t.Errorf("%s: want exactly one metrics Service, got %d", where, len(o.servicesFor(d)))
	}
	checkNATSRole(t, where, o.envs[d.Name], "query")
}

func (o *objects) checkProjection(t *testing.T, v variant, projection string) {
	name := deploymentName(projection)
	where := o.dir + ": " + name
	d, ok := o.deployments[name]
	if !ok {
		return // reported by checkWorkloads
	}
	if binaryOf(d) != "projector" {
		t.Errorf("%s: runs %s, want projector", where, binaryOf(d))
	}
	env := o.envs[d.Name]
	if got := env["PROJECTOR_PROJECTION"]; got != projection {
		t.Errorf("%s: PROJECTOR_PROJECTION=%q, want %q", where, got, projection)
	}
	// Each projection runs as its own PostgreSQL role, which cannot migrate.
	if !strings.HasPrefix(env["DATABASE_URL"], "secret:") || !strings.HasSuffix(env["DATABASE_URL"], "/"+projection) {
		t.Errorf("%s: DATABASE_URL must come from a Secret's key %s (the projection's role), got %q", where, projection, env["DATABASE_URL"])
	}
	if env["PROJECTOR_MIGRATE"] != "false" {
		t.Errorf("%s: PROJECTOR_MIGRATE=%q; the setup Job migrates, the runtime role cannot", where, env["PROJECTOR_MIGRATE"])
	}
	checkNATSRole(t, where, env, "projector")
	if n := len(o.pdbsFor(d)); n != 1 {
		t.Errorf("%s: want exactly one PodDisruptionBudget, got %d", where, n)
	}
	if n := len(o.servicesFor(d)); n != 1 {
		t.Errorf("%s: want exactly one metrics Service, got %d", where, n)
	}

	so, ok := o.scaledObjects[name]
	if !v.keda {
		if ok {
			t.Errorf("%s: unexpected ScaledObject", where)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("%s: without KEDA, want replicas 1, got %s", where, show(d.Spec.Replicas))
		}
		return
	}
	if !ok {
		t.Errorf("%s: no ScaledObject", where)
		return
	}
	if d.Spec.Replicas != nil {
		t.Errorf("%s: sets replicas, which fights the ScaledObject's HPA on every apply", where)
	}
	checkScaledObject(t, where, so, d, projection, v.minProjectors)
}

// pdbsFor returns the PDBs whose selector matches d's pods.
func (o *objects) pdbsFor(d *appsv1.Deployment) []string {
	var names []string
	for name, pdb := range o.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			names = append(names, name)
		}
	}
	return names
}

// servicesFor returns the Services whose selector matches d's pods.
func (o *objects) servicesFor(d *appsv1.Deployment) []string {
	var names []string
	for name, svc := range o.services {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			names = append(names, name)
		}
	}
	return names
}

// checkSelectors: every PDB and Service selects the pods of exactly one
// Deployment, a PDB leaves room to evict, and each Service port reaches a
// declared container port.
func (o *objects) checkSelectors(t *testing.T) {
	matching := func(sel labels.Selector) []*appsv1.Deployment {
		var ds []*appsv1.Deployment
		for _, d := range o.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				ds = append(ds, d)
			}
		}
		return ds
	}
	for name, pdb := range o.pdbs {
		where := o.dir + ": PodDisruptionBudget " + name
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("%s: bad or empty selector (%v)", where, err)
			continue
		}
		if ds := matching(sel); len(ds) != 1 {
			t.Errorf("%s: selects the pods of %d Deployments, want 1", where, len(ds))
		}
		if (pdb.Spec.MaxUnavailable == nil) == (pdb.Spec.MinAvailable == nil) {
			t.Errorf("%s: set exactly one of maxUnavailable and minAvailable", where)
		}
		if mu := pdb.Spec.MaxUnavailable; mu != nil && mu.Type == intstr.Int && mu.IntValue() < 1 {
			t.Errorf("%s: maxUnavailable %s blocks every eviction (node drains hang)", where, mu.String())
		}
		if pdb.Spec.MinAvailable != nil {
			t.Errorf("%s: use maxUnavailable: minAvailable blocks drains when a Deployment runs one replica", where)
		}
	}
	for name, svc := range o.services {
		where := o.dir + ": Service " + name
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("%s: no selector", where)
			continue
		}
		ds := matching(labels.SelectorFromSet(svc.Spec.Selector))
		if len(ds) != 1 {
			t.Errorf("%s: selects the pods of %d Deployments, want 1", where, len(ds))
			continue
		}
		c := ds[0].Spec.Template.Spec.Containers[0]
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntValue() == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if got := containerPort(c, target); got != metricsPort || p.Port != metricsPort {
				t.Errorf("%s: port %d -> %s (%d), want %d -> %d", where, p.Port, target.String(), got, metricsPort, metricsPort)
			}
		}
	}
}

// show prints an optional count.
func show(n *int32) string {
	if n == nil {
		return "unset"
	}
	return strconv.Itoa(int(*n))
}

// checkNATSRole: the workload connects as role, a user of
// deploy/nats/auth.conf, with its password from the Secret
// jetsource-nats-users and its own reply inbox.
func checkNATSRole(t *testing.T, where string, env map[string]string, role string) {
	t.Helper()
	if env["NATS_USER"] != role || !fromSecret(env["NATS_PASSWORD"], "jetsource-nats-users", role) || env["NATS_INBOX_PREFIX"] != "_INBOX."+role {
		t.Errorf("%s: must connect as the NATS user %s (NATS_USER, NATS_PASSWORD from jetsource-nats-users/%s, NATS_INBOX_PREFIX=_INBOX.%s); got %q, %q, %q",
			where, role, role, role, env["NATS_USER"], env["NATS_PASSWORD"], env["NATS_INBOX_PREFIX"])
	}
}

// checkSetupJob: the Job jetsource-setup applies the streams as the NATS
// operator, with the aggregator's topology and lease TTL, and then migrates
// the schema as the migrating role; hardened like the Deployments.
func (o *objects) checkSetupJob(t *testing.T, v variant) {
	job, ok := o.jobs["jetsource-setup"]
	if !ok || len(o.jobs) != 1 {
		t.Errorf("%s: want exactly the Job jetsource-setup, got %v", o.dir, slices.Sorted(maps.Keys(o.jobs)))
		return
	}
	where := o.dir + ": Job jetsource-setup"
	pod := job.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("%s: pod must run as non-root with seccomp RuntimeDefault, no service account token and no service links", where)
	}
	if job.Spec.TTLSecondsAfterFinished == nil {
		t.Errorf("%s: without ttlSecondsAfterFinished the next apply cannot replace the finished Job", where)
	}
	o.checkVolumes(t, where, v, pod.Volumes)
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Errorf("%s: want the init container streams and the container migrate", where)
		return
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		image, _, _ := strings.Cut(c.Image, ":")
		image, _, _ = strings.Cut(image, "@")
		if image != "jetsource/orderctl" || (v.taggedImages && c.Image == image) {
			t.Errorf("%s: container %s image %q, want a tagged jetsource/orderctl", where, c.Name, c.Image)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
			*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: container %s must have readOnlyRootFilesystem, no privilege escalation and drop ALL capabilities", where, c.Name)
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s: container %s has no memory limit", where, c.Name)
		}
	}
	streams, migrate := pod.InitContainers[0], pod.Containers[0]
	if !slices.Equal(streams.Args, []string{"streams", "apply"}) || !slices.Equal(migrate.Args, []string{"migrate"}) {
		t.Errorf("%s: want orderctl streams apply, then orderctl migrate; got %v, %v", where, streams.Args, migrate.Args)
	}
	env := o.env(t, where, v, streams)
	checkNATSRole(t, where+" streams", env, "operator")
	agg := o.envs["aggregator"]
	for _, name := range []string{"JETSOURCE_PARTITIONS", "JETSOURCE_REPLICAS", "JETSOURCE_RESULTS_MAX_AGE", "JETSOURCE_DUPLICATE_WINDOW", "AGGREGATOR_LEASE_TTL", "NATS_URL"} {
		if env[name] != agg[name] {
			t.Errorf("%s: streams apply runs with %s=%q, the aggregator with %q; it would create streams the aggregator refuses", where, name, env[name], agg[name])
		}
	}
	if got := o.env(t, where, v, migrate)["DATABASE_URL"]; !fromSecret(got, "jetsource-postgres", "migrator") {
		t.Errorf("%s: migrate must run as the migrating role (DATABASE_URL from jetsource-postgres/migrator), got %q", where, got)
	}
}

// fromSecret reports whether an env value (as env resolves it) comes from
// key of the Secret name, or of a Secret kustomize generated from it (the
// name plus a content hash).
func fromSecret(value, name, key string) bool {
	ref, ok := strings.CutPrefix(value, "secret:")
	if !ok {
		return false
	}
	secret, k, _ := strings.Cut(ref, "/")
	return k == key && (secret == name || strings.HasPrefix(secret, name+"-"))
}
