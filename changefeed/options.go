package changefeed

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
)

// Sentinel errors; every error New, Run and Check return wraps one of them
// (or a cache or PostgreSQL error).
var (
	// ErrInvalidOption is returned by New for an Options field it cannot use.
	ErrInvalidOption = errors.New("gormcache: invalid change-feed option")
	// ErrUnsupportedTable is returned by Check (and reported in
	// Stats.Unsupported) for a followed table whose rows the feed cannot
	// key: no primary key, no replica identity, or missing.
	ErrUnsupportedTable = errors.New("gormcache: table unsupported by the change feed")
	// ErrClosed is returned by Run on a closed Relay.
	ErrClosed = errors.New("gormcache: change feed closed")
	// ErrLeaseLost ends a streaming session whose leader lease could not be
	// renewed in time: the relay stops before acknowledging anything more.
	ErrLeaseLost = errors.New("gormcache: change-feed lease lost")
	// ErrSlotLost is reported (Options.OnError) when the replication slot
	// was missing or invalidated: every cache was retired and the slot
	// recreated.
	ErrSlotLost = errors.New("gormcache: replication slot lost")
)

// Defaults of Options.
const (
	DefaultSlot            = "gormcache_relay"
	DefaultPublication     = "gormcache_relay"
	DefaultLeaseTTL        = 5 * time.Second
	DefaultStandbyInterval = time.Second
	DefaultPollInterval    = 5 * time.Second
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultMaxTxnKeys      = 10000
)

// Options configures a Relay. Zero values mean the defaults.
type Options struct {
	// ConnString is the database's connection string (DSN or URL), of a
	// role with the REPLICATION attribute (or a superuser). The relay adds
	// replication=database for its streaming connection. Required.
	ConnString string
	// Cache holds the rows of followed tables no repository registered,
	// under "<table>:<pk>" (as the root package's Plugin keys them), and
	// its namespace is retired with every registered cache when the slot is
	// lost. Required.
	Cache *cache.Cache
	// DB, if set, is the database whose repositories' registrations (cache,
	// namespace, unique columns, version column) say how a table's rows are
	// keyed; the relay reads the registry on every change, so repositories
	// created after New are seen.
	DB *gorm.DB
	// Tables are the tables followed (published), as PostgreSQL names them
	// ("users" or "app.users").
	Tables []string
	// Describe describes tables without a repository (a standalone relay);
	// they are followed too, and a description wins over the registry.
	Describe []Table
	// AllTables publishes every table of the database (FOR ALL TABLES)
	// instead of Tables. PostgreSQL then refuses UPDATE and DELETE on
	// tables without a replica identity: Check reports them.
	AllTables bool
	// Slot and Publication name the replication slot and the publication.
	// Default DefaultSlot and DefaultPublication. Lower-case letters,
	// digits and underscores.
	Slot, Publication string

	// Redis holds the leader lease. Required.
	Redis redis.UniversalClient
	// LeaseKey is the lease's Redis key; its fencing counter lives beside
	// it (the slot's marks live in PostgreSQL, so losing Redis loses no
	// feed state). Default "gormcache:relay:<Slot>".
	LeaseKey string
	// LeaseTTL is the lease's lifetime; the leader renews it every
	// LeaseTTL/3 and stops acknowledging once 4/5 of it passed without a
	// renewal. A dead leader is replaced within about LeaseTTL*4/3.
	// Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// InstanceID names this relay in the lease (Stats.Leader). Default:
	// host name, process id and a random suffix.
	InstanceID string

	// StandbyInterval is how often the relay reports its applied position
	// to PostgreSQL. Default DefaultStandbyInterval.
	StandbyInterval time.Duration
	// PollInterval is how often the slot's retained WAL is read. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the waits between reconnections and
	// between retries of an invalidation. Defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxTxnKeys is the most keys one transaction invalidates in one cache;
	// a larger transaction retires the cache instead. Default
	// DefaultMaxTxnKeys.
	MaxTxnKeys int
	// Now is the clock of Stats (lag). Default time.Now.
	Now func() time.Time
	// OnError, if set, is told of every error the relay recovers from
	// (reconnections, retried invalidations, lost slots). It must be fast.
	OnError func(err error)
	// Logger receives the relay's state changes, never one line per
	// transaction: leadership taken and lost, the stream ending and
	// resuming, a lost slot, tables the feed cannot key. Default: nothing
	// is logged.
	Logger *slog.Logger
}

// Table describes how a table's rows are cached, for tables no repository
// registered (a standalone relay). The primary key is read from the catalog.
type Table struct {
	// Name is the table as PostgreSQL names it ("users" or "app.users").
	Name string
	// Namespace prefixes its keys ("<ns>:<pk>"). Default: the table's name
	// without schema, as a repository's default.
	Namespace string
	// Version is the column of the model's repository.Version; empty for
	// an unversioned model (its invalidations are stamped, as a local
	// write's).
	Version string
	// Uniques are columns whose "<ns>:<col>=<value>" mappings are cached
	// (GetBy).
	Uniques []string
	// Cache holds the rows. Default Options.Cache.
	Cache *cache.Cache
}

func (o *Options) withDefaults() (Options, error) {
	v := *o
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
	if v.ConnString == "" {
		return bad("ConnString is required")
	}
	if _, err := pgconn.ParseConfig(v.ConnString); err != nil {
		return bad("ConnString: %v", err)
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	if v.Cache == nil {
		return bad("Cache is required")
	}
	if v.Redis == nil {
		return bad("Redis is required (the leader lease)")
	}
	if len(v.Tables) == 0 && len(v.Describe) == 0 && !v.AllTables {
		return bad("no table followed: set Tables, Describe or AllTables")
	}
	if v.AllTables && len(v.Tables) > 0 {
		return bad("Tables and AllTables are exclusive")
	}
	for _, t := range v.Tables {
		if t == "" || strings.Count(t, ".") > 1 {
			return bad("table %q", t)
		}
	}
	for _, t := range v.Describe {
		if t.Name == "" || strings.Count(t.Name, ".") > 1 {
			return bad("Describe: table %q", t.Name)
		}
		if strings.ContainsAny(t.Namespace, "{}") {
			return bad("Describe: namespace %q contains '{' or '}'", t.Namespace)
		}
	}
	if v.Slot == "" {
		v.Slot = DefaultSlot
	}
	if v.Publication == "" {
		v.Publication = DefaultPublication
	}
	for _, n := range []string{v.Slot, v.Publication} {
		if !identRE(n) {
			return bad("%q: slot and publication names are lower-case letters, digits and underscores", n)
		}
	}
	if v.LeaseKey == "" {
		v.LeaseKey = "gormcache:relay:" + v.Slot
	}
	durs := []struct {
		d   *time.Duration
		def time.Duration
		n   string
	}{{&v.LeaseTTL, DefaultLeaseTTL, "LeaseTTL"}, {&v.StandbyInterval, DefaultStandbyInterval, "StandbyInterval"},
		{&v.PollInterval, DefaultPollInterval, "PollInterval"}, {&v.MinBackoff, DefaultMinBackoff, "MinBackoff"},
		{&v.MaxBackoff, DefaultMaxBackoff, "MaxBackoff"}}
	for _, d := range durs {
		if *d.d < 0 {
			return bad("%s is negative", d.n)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	if v.LeaseTTL < 100*time.Millisecond {
		return bad("LeaseTTL below 100ms")
	}
	if v.MaxBackoff < v.MinBackoff {
		v.MaxBackoff = v.MinBackoff
	}
	if v.MaxTxnKeys < 0 {
		return bad("MaxTxnKeys is negative")
	}
	if v.MaxTxnKeys == 0 {
		v.MaxTxnKeys = DefaultMaxTxnKeys
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.InstanceID == "" {
		h, _ := os.Hostname()
		v.InstanceID = fmt.Sprintf("%s-%d-%s", h, os.Getpid(), randHex(4))
	}
	return v, nil
}

func identRE(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
