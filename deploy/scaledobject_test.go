package deploy_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	runner "github.com/jetsource/jetsource/internal/projections"
)

// ScaledObject mirrors keda.sh/v1alpha1 ScaledObject as KEDA v2.21 defines
// it (apis/keda/v1alpha1/scaledobject_types.go, scaletriggers_types.go):
// every spec field with its JSON name and Go type, so a strict decode
// rejects what KEDA would not accept. Status is left out: manifests carry
// none.
//
// The real package is not imported: it pulls in controller-runtime,
// client-go and apiextensions-apiserver, and its k8s.io/client-go v0.36
// does not build against the k8s.io/api v0.37 this module uses.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScaledObjectSpec `json:"spec"`
}

type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig `json:"advanced,omitempty"`
	Triggers              []ScaleTriggers `json:"triggers"`
	Fallback              *Fallback       `json:"fallback,omitempty"`
}

type ScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *HorizontalPodAutoscalerConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                           `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              ScalingModifiers               `json:"scalingModifiers,omitempty"`
}

type HorizontalPodAutoscalerConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type ScalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type Fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type ScaleTriggers struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *AuthenticationRef             `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type AuthenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// The nats-jetstream scaler's metadata keys (KEDA v2.21
// pkg/scalers/nats_jetstream_scaler.go) and the ones it requires here.
var (
	natsJetStreamKeys = []string{
		"natsServerMonitoringEndpoint", "account", "accountID", "stream", "consumer",
		"lagThreshold", "activationLagThreshold", "useHttps",
	}
	natsJetStreamRequired = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}
)

// checkScaledObject: the ScaledObject scales d on the backlog of each of
// the projection's partition consumers, within 1..partitions replicas.
func checkScaledObject(t *testing.T, where string, so *ScaledObject, d *appsv1.Deployment, projection string, minReplicas int32) {
	t.Helper()
	spec := so.Spec
	if ref := spec.ScaleTargetRef; ref == nil || ref.Name != d.Name ||
		(ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
		t.Errorf("%s: ScaledObject must target Deployment %s, targets %+v", where, d.Name, ref)
	}
	if spec.MinReplicaCount == nil || *spec.MinReplicaCount != minReplicas {
		t.Errorf("%s: minReplicaCount %s, want %d", where, show(spec.MinReplicaCount), minReplicas)
	}
	// Replicas beyond the partition count would own no partition.
	if spec.MaxReplicaCount == nil || *spec.MaxReplicaCount != partitions {
		t.Errorf("%s: maxReplicaCount %s, want %d (one replica per partition at most)", where, show(spec.MaxReplicaCount), partitions)
	}
	if spec.MinReplicaCount != nil && spec.MaxReplicaCount != nil && *spec.MinReplicaCount > *spec.MaxReplicaCount {
		t.Errorf("%s: minReplicaCount exceeds maxReplicaCount", where)
	}
	if spec.PollingInterval != nil && *spec.PollingInterval < 1 {
		t.Errorf("%s: pollingInterval must be at least 1", where)
	}

	var consumers, names []string
	for i, trig := range spec.Triggers {
		tw := fmt.Sprintf("%s: trigger %d", where, i)
		if trig.Type != "nats-jetstream" {
			t.Errorf("%s: type %q, want nats-jetstream", tw, trig.Type)
			continue
		}
		if trig.Name != "" {
			if slices.Contains(names, trig.Name) {
				t.Errorf("%s: duplicate trigger name %q", tw, trig.Name)
			}
			names = append(names, trig.Name)
		}
		for key := range trig.Metadata {
			if !slices.Contains(natsJetStreamKeys, key) {
				t.Errorf("%s: unknown nats-jetstream metadata %q", tw, key)
			}
		}
		for _, key := range natsJetStreamRequired {
			if trig.Metadata[key] == "" {
				t.Errorf("%s: metadata %s is required", tw, key)
			}
		}
		if trig.Metadata["stream"] != eventsStream {
			t.Errorf("%s: stream %q, want %s", tw, trig.Metadata["stream"], eventsStream)
		}
		for _, key := range []string{"lagThreshold", "activationLagThreshold"} {
			if s, ok := trig.Metadata[key]; ok {
				if n, err := strconv.ParseInt(s, 10, 64); err != nil || n < 0 || (key == "lagThreshold" && n == 0) {
					t.Errorf("%s: %s %q is not a positive integer", tw, key, s)
				}
			}
		}
		consumers = append(consumers, trig.Metadata["consumer"])
	}
	var want []string
	for p := range partitions {
		// The manifests leave JETSOURCE_SCHEMA at its default.
		want = append(want, runner.ConsumerName(runner.DefaultSchema, projection, p))
	}
	slices.Sort(consumers)
	slices.Sort(want)
	if !slices.Equal(consumers, want) {
		t.Errorf("%s: triggers watch consumers %v, want one per partition: %v", where, consumers, want)
	}
}
