package benchmarks

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The TTLs every library is given: 10 minutes in Redis, 1 minute in process.
const (
	remoteTTL = 10 * time.Minute
	localTTL  = time.Minute
)

// instance is one library instance as an application would hold it: its
// own in-process tier (if any) and its own Redis clients, over the shared
// PostgreSQL pool and the shared Redis.
type instance interface {
	// Get reads the row with primary key id through the library.
	Get(ctx context.Context, id int64) (*Row, error)
	// Update writes row's Name, Email, Bio, Score and Active to PostgreSQL,
	// bumps its version (row.Version is then the new one) and invalidates
	// the way the library's README says. errConflict: re-read and retry.
	Update(ctx context.Context, row *Row) error
	// Close releases everything the instance opened.
	Close() error
}

// manyGetter is implemented by instances of libraries with a batch read.
type manyGetter interface {
	// GetMany returns the rows with the given ids, in order.
	GetMany(ctx context.Context, ids []int64) ([]*Row, error)
}

// localEvicter is implemented by instances with an in-process tier: it drops
// one key from that tier only, so that the next read is served by Redis.
type localEvicter interface {
	EvictLocal(id int64)
}

// contestant is one library configuration.
type contestant struct {
	name string
	// note is shown in the README's contestant table.
	note string
	// open returns a new instance whose keys live under ns. Two instances
	// opened with the same ns share Redis data but not their local tiers.
	open func(e *env, ns string) (instance, error)
	// many means the instances implement manyGetter.
	many bool
	// batchFill means GetMany fills the same per-row entries as Get, so it
	// can warm the cache for Get.
	batchFill bool
}

// contestants in the order they appear in every benchmark. The write
// variant ("-lww") appears only in the mixed workloads (see README).
var (
	cRaw        = contestant{name: "raw-gorm", note: "no cache: db.Take / IN query", open: openRaw, many: true}
	cGCFull     = contestant{name: "gormcache-full", note: "L1 bigcache + Redis + invalidation bus; rows stored column by column, rebuilt as db.First would", open: openGormcache(true), many: true, batchFill: true}
	cGCFullLWW  = contestant{name: "gormcache-full-lww", note: "gormcache-full with blind writes + cache.Invalidate (the peers' write semantics)", open: openGormcacheLWW, many: true, batchFill: true}
	cGCL2       = contestant{name: "gormcache-l2", note: "Redis only (L1MaxBytes: -1)", open: openGormcache(false), many: true, batchFill: true}
	cJetcache   = contestant{name: "jetcache-go", note: "FreeCache + Redis, syncLocal over pub/sub, msgpack+s2", open: openJetcache, many: true, batchFill: true}
	cGocache    = contestant{name: "gocache", note: "loadable(chain(bigcache, Redis)) + marshaler, msgpack", open: openGocache}
	cGoRedis    = contestant{name: "go-redis-cache", note: "TinyLFU + Redis, msgpack+s2", open: openGoRedisCache}
	cRocks      = contestant{name: "rockscache", note: "Redis only, weak consistency (default), msgpack", open: openRockscache, many: true, batchFill: true}
	cGormCaches = contestant{name: "gorm-caches", note: "GORM plugin, Redis cacher of its README, easer on, JSON", open: openGormCaches, many: true}
	cGCPlugin   = contestant{name: "gormcache-plugin", note: "GORM plugin (db.Use) + Cached clause on plain GORM reads, a registered repository serving them; plain GORM writes invalidated after COMMIT", open: openGormcachePlugin, many: true, batchFill: true}

	allContestants = []contestant{cRaw, cGCFull, cGCL2, cJetcache, cGocache, cGoRedis, cRocks, cGormCaches, cGCPlugin}
	// mixedContestants adds, for the mixed workloads, gormcache with the
	// peers' write semantics (see lwwInstance).
	mixedContestants = []contestant{cRaw, cGCFull, cGCFullLWW, cGCL2, cJetcache, cGocache, cGoRedis, cRocks, cGormCaches, cGCPlugin}
)

// rowKey is the cache key of row id used by every peer: "<ns>:row:<id>".
func rowKey(ns string, id int64) string { return ns + ":row:" + strconv.FormatInt(id, 10) }

// loadRow reads one row: the query every contestant's loader runs.
func loadRow(ctx context.Context, db *gorm.DB, id int64) (*Row, error) {
	r := new(Row)
	if err := db.WithContext(ctx).Take(r, id).Error; err != nil {
		return nil, err
	}
	return r, nil
}

// loadRows reads rows by primary key in one query, keyed by id.
func loadRows(ctx context.Context, db *gorm.DB, ids []int64) (map[int64]*Row, error) {
	var rows []Row
	if err := db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[int64]*Row, len(rows))
	for i := range rows {
		out[rows[i].ID] = &rows[i]
	}
	return out, nil
}

// inOrder turns found rows into a slice in the order of ids, failing on a
// missing one (the benchmarks only ask for existing rows).
func inOrder(ids []int64, found map[int64]*Row) ([]*Row, error) {
	out := make([]*Row, len(ids))
	for i, id := range ids {
		r := found[id]
		if r == nil {
			return nil, fmt.Errorf("row %d missing from a batch read", id)
		}
		out[i] = r
	}
	return out, nil
}

// updateRow is the write of every contestant without optimistic locking:
// one UPDATE (in GORM's default transaction) that bumps the version and
// returns it into row.
func updateRow(ctx context.Context, db *gorm.DB, row *Row) error {
	res := db.WithContext(ctx).Model(row).
		Clauses(clause.Returning{Columns: []clause.Column{{Name: "version"}}}).
		Updates(map[string]any{
			"name": row.Name, "email": row.Email, "bio": row.Bio,
			"score": row.Score, "active": row.Active,
			"version": gorm.Expr("version + 1"),
		})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("update of row %d matched %d rows", row.ID, res.RowsAffected)
	}
	return nil
}

// rawInstance is GORM with no cache.
type rawInstance struct{ db *gorm.DB }

func openRaw(e *env, _ string) (instance, error) { return rawInstance{db: e.db}, nil }

func (r rawInstance) Get(ctx context.Context, id int64) (*Row, error) { return loadRow(ctx, r.db, id) }

func (r rawInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	found, err := loadRows(ctx, r.db, ids)
	if err != nil {
		return nil, err
	}
	return inOrder(ids, found)
}

func (r rawInstance) Update(ctx context.Context, row *Row) error { return updateRow(ctx, r.db, row) }

func (rawInstance) Close() error { return nil }
