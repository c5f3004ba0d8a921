package projections

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDefaultReplicaIDIsTheHostAndRandom checks that a replica without a
// name is named after the host (the pod in Kubernetes) with a random
// suffix, different for every runner.
func TestDefaultReplicaIDIsTheHostAndRandom(t *testing.T) {
	var a, b Config
	a.setDefaults()
	b.setDefaults()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(strings.ReplaceAll(host, ".", "_")) + `-[0-9a-f]{8}$`)
	if !re.MatchString(a.ReplicaID) || a.ReplicaID == b.ReplicaID {
		t.Errorf("default replica ids %q and %q; want two different %s-<8 hex digits>", a.ReplicaID, b.ReplicaID, host)
	}
}
