package invalidation

import (
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultPingInterval = 50 * time.Millisecond
	// DefaultHealthWindow is the cache's DefaultStalenessBound: a cache
	// with Redis and no bus caps its L1 entries at it, so attaching a bus
	// with the default window keeps the same bound.
	DefaultHealthWindow   = cache.DefaultStalenessBound
	DefaultPublishTimeout = 100 * time.Millisecond
	// DefaultSubscribeTimeout bounds each attempt to establish the
	// subscription; see Options.SubscribeTimeout.
	DefaultSubscribeTimeout = time.Second
	DefaultQueueLen         = 10000
)

// Options configures a Bus. The zero value means defaults.
type Options struct {
	// Redis carries the subscription: the bus holds one dedicated connection
	// on it. Default: the cache's own Redis client. Events are always
	// published through the cache's client, in the same round trip as the
	// tombstones they announce where the client allows it.
	Redis redis.UniversalClient
	// Channel is the pub/sub channel. Default "<namespace>:invalidations".
	Channel string
	// InstanceID names this instance in its events. Default: random.
	InstanceID string
	// PingInterval is how often the instance publishes a heartbeat to its
	// own channel (on the subscription connection) to prove that events
	// still reach it. Default 50 ms.
	PingInterval time.Duration
	// HealthWindow is how long L1 is served after the last heartbeat came
	// back (counted from when it was sent). It is the staleness bound B: a
	// write acknowledged anywhere is visible on every instance within about
	// HealthWindow plus one network delay, even if its message is lost. It
	// must exceed PingInterval. Default 150 ms.
	HealthWindow time.Duration
	// PublishTimeout bounds each PUBLISH attempt; a failed publish is retried
	// in order (at most 50 ms apart) until it succeeds or the bus closes, so
	// an attempt must not sit in the client's own retries while the events
	// behind it wait. Default 100 ms.
	PublishTimeout time.Duration
	// SubscribeTimeout bounds each attempt to establish the subscription
	// connection (dial, handshake, SUBSCRIBE): the one New makes before it
	// returns, and every reconnection after a connection error, so that a
	// Redis that accepts connections and never answers holds neither New
	// nor Close longer than this. Default 1 second.
	SubscribeTimeout time.Duration
	// QueueLen bounds the events waiting to be published while Redis is
	// unreachable. Beyond it the oldest are dropped; subscribers see the gap
	// in sequence numbers and flush. Default 10000.
	QueueLen int
	// OnApply, if set, is called after an event from another instance was
	// applied, with the time from its publication (by the origin's clock).
	OnApply func(e Event, lag time.Duration)
	// Logger receives the bus's state changes, never one line per event:
	// unhealthy (L1 off, with the reason) and healthy again (L1 flushed and
	// on), (re)subscriptions, events declared lost (L1 flushed), events
	// dropped from a full queue (once until it drains), strict waits that
	// timed out (once until one is acknowledged). Default: the cache's
	// Options.Logger, which discards everything unless set.
	Logger *slog.Logger
	// Transport chooses classic or sharded pub/sub (transport.go). Default
	// TransportAuto: sharded when the cache's client is a
	// *redis.ClusterClient. Every instance of a namespace must use the same.
	Transport Transport
}
