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
}

func newTarget(schema, projection string) target {
	s := pgx.Identifier{schema}.Sanitize()
	cp := s + ".projection_checkpoints"
	dl := s + ".projection_dead_letters"
	return target{
		projection: projection,
		schema:     schema,
		sql: targetSQL{
			searchPath:       s,
			ensureCheckpoint: `INSERT INTO ` + cp + ` (projection, partition) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			readCheckpoint:   `SELECT last_sequence FROM ` + cp + ` WHERE projection = $1 AND partition = $2`,
			// Row lock first: it orders the batch after a rebuild swap or an
			// operator's retry of the same partition, and before them.
			lockCheckpoint: `SELECT last_sequence FROM ` + cp + ` WHERE projection = $1 AND partition = $2 FOR UPDATE`,
			advance: `UPDATE ` + cp + ` SET last_sequence = $3, last_event_at = COALESCE($4, last_event_at), updated_at = now()
				WHERE projection = $1 AND partition = $2 AND last_sequence = $5`,
			blockedOrders: `SELECT DISTINCT order_id FROM ` + dl + `
				WHERE projection = $1 AND partition = $2 AND status IN ('failed', 'parked')`,
			insertDeadLetter: `INSERT INTO ` + dl + ` (projection, partition, stream_sequence, subject, order_id,
				event_id, event_type, event_version, body, error, attempts, status)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
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

// fence names the session advisory lock a writer must still hold when it
// commits; a replica whose lock session ended (and whose partition another
// replica may own by now) cannot commit.
type fence struct {
	class, key int32
	pid        uint32
}

// fenceSQL is true when the session pid holds the advisory lock (class, key)
// in the current database.
const fenceSQL = `SELECT EXISTS (SELECT 1 FROM pg_locks
	WHERE locktype = 'advisory' AND granted AND objsubid = 2
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND classid::bigint = $1 AND objid::bigint = $2 AND pid = $3)`

// args are fenceSQL's arguments: pg_locks shows the int4 keys as unsigned.
func (f fence) args() []any {
	return []any{int64(uint32(f.class)), int64(uint32(f.key)), int32(f.pid)}
}

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
