package projections

import (
	"regexp"
	"testing"
)

// TestDefaultReplicaIDIsRandom checks that a replica without a name gets a
// random one (the library reads nothing from the environment), different
// for every runner.
func TestDefaultReplicaIDIsRandom(t *testing.T) {
	var a, b Config
	a.setDefaults()
	b.setDefaults()
	if re := regexp.MustCompile(`^replica-[0-9a-f]{16}$`); !re.MatchString(a.ReplicaID) || a.ReplicaID == b.ReplicaID {
		t.Errorf("default replica ids %q and %q; want two different replica-<16 hex digits>", a.ReplicaID, b.ReplicaID)
	}
}
