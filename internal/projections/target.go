package projections

import (
	"hash/fnv"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// target is where a worker writes: the schema that holds the projection's
// tables (named by search_path), and the checkpoint and dead-letter tables.
// Live runners write to the configured schema; a rebuild writes to a shadow
// schema with its own checkpoints and dead letters.
type target struct {
	projection string
	schema     string // unquoted
	sql        targetSQL
}

// targetSQL holds the statements of a target, built once.
type targetSQL struct {
	searchPath       string
	ensureCheckpoint string
	readCheckpoint   string
	lockCheckpoint   string
	advance          string
	blockedOrders    string
	insertDeadLetter string
	// claim takes the partition's advisory lock and, if it was free,
	// records a fresh owner epoch; it returns no row when the lock is
	// taken.
	claim string
	// owner reads the partition's owner epoch; ownerShare does so and keeps
	// it from changing until the transaction ends.
	owner      string
	ownerShare string
}

func newTarget(schema, projection string) target {
	s := pgx.Identifier{schema}.Sanitize()
	cp := s + ".projection_checkpoints"
	dl := s + ".projection_dead_letters"
	ow := s + ".projection_owners"
	owner := `SELECT epoch FROM ` + ow + ` WHERE projection = $1 AND partition = $2`
	return target{
		projection: projection,
		schema:     schema,
		sql: targetSQL{
			searchPath:       s,
			ensureCheckpoint: `INSERT INTO ` + cp + ` (projection, partition) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			readCheckpoint:   `SELECT last_sequence, last_event_id FROM ` + cp + ` WHERE projection = $1 AND partition = $2`,
			// Row lock first: it orders the batch after a rebuild swap or an
			// operator's retry of the same partition, and before them.
			lockCheckpoint: `SELECT last_sequence FROM ` + cp + ` WHERE projection = $1 AND partition = $2 FOR UPDATE`,
			advance: `UPDATE ` + cp + ` SET last_sequence = $3, last_event_id = $6, last_event_at = COALESCE($4, last_event_at),
				updated_at = now() WHERE projection = $1 AND partition = $2 AND last_sequence = $5`,
			blockedOrders: `SELECT DISTINCT order_id FROM ` + dl + `
				WHERE projection = $1 AND partition = $2 AND status IN ('failed', 'parked')`,
			insertDeadLetter: `INSERT INTO ` + dl + ` (projection, partition, stream_sequence, subject, order_id,
				event_id, event_type, event_version, body, error, attempts, status)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			claim: `INSERT INTO ` + ow + ` (projection, partition, epoch)
				SELECT $1, $2, nextval('` + s + `.projection_owner_epochs') WHERE pg_try_advisory_lock($3, $4)
				ON CONFLICT (projection, partition) DO UPDATE SET epoch = EXCLUDED.epoch
				RETURNING epoch`,
			owner:      owner,
			ownerShare: owner + ` FOR SHARE`,
		},
	}
}

// shadowSchema holds a rebuild's fresh tables until they are swapped in.
func shadowSchema(schema, projection string) string { return schema + "_rebuild_" + projection }

// retiredSchema holds the replaced tables during a swap, to be dropped.
func retiredSchema(schema, projection string) string { return schema + "_retired_" + projection }

// lockClass is the first key of a projection's advisory locks; the second
// is the partition (ownership) or rebuildLock.
func lockClass(schema, projection string) int32 {
	h := fnv.New32a()
	h.Write([]byte("jetsource/projection/" + schema + "/" + projection))
	return int32(h.Sum32())
}

// rebuildLock is the second advisory lock key of a projection's rebuild.
const rebuildLock int32 = -1

// ConsumerName is the durable consumer through which the runners of a
// projection read one partition. The schema is part of it, so deployments
// with different schemas on one NATS account do not share consumers.
func ConsumerName(schema, projection string, partition int) string {
	return "projector_" + schema + "_" + projection + "_" + strconv.Itoa(partition)
}

// rebuildConsumerName is the consumer of a rebuild's partition.
func rebuildConsumerName(schema, projection string, partition int) string {
	return "rebuild_" + schema + "_" + projection + "_" + strconv.Itoa(partition)
}
