package projections

import (
	"fmt"
	"testing"
)

// TestSharesAddUp checks that the shares the replicas compute add up to
// the partition count, differ by at most one, and leave replicas beyond
// the partition count with none.
func TestSharesAddUp(t *testing.T) {
	for _, partitions := range []int{1, 4, 16, 17, 1024} {
		for n := 1; n <= 40; n++ {
			live := make([]string, n)
			for i := range live {
				live[i] = fmt.Sprintf("r%03d", i)
			}
			sum, lo, hi := 0, partitions, 0
			for _, id := range live {
				s := shareOf(partitions, live, id)
				sum, lo, hi = sum+s, min(lo, s), max(hi, s)
			}
			if sum != partitions || hi-lo > 1 || n > partitions && lo != 0 {
				t.Errorf("%d partitions over %d replicas: shares sum to %d, from %d to %d", partitions, n, sum, lo, hi)
			}
		}
	}
}
