package invalidation

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultPingInterval   = 50 * time.Millisecond
	DefaultHealthWindow   = 150 * time.Millisecond
	DefaultPublishTimeout = time.Second
	DefaultQueueLen       = 10000
)

// Options configures a Bus. The zero value means defaults.
type Options struct {
	// Redis carries the events. Default: the cache's own Redis client. The
	// bus holds one dedicated subscription connection on it.
	Redis redis.UniversalClient
	// Channel is the pub/sub channel. Default "<namespace>:invalidations".
	Channel string
	// InstanceID names this instance in its events. Default: random.
	InstanceID string
	// PingInterval is how often the subscription connection is PINGed.
	PingInterval time.Duration
	// HealthWindow is how long the subscription may stay silent (no event,
	// no PONG) before L1 stops being served. It is the staleness bound B: a
	// write acknowledged anywhere is visible on every instance within about
	// HealthWindow plus one network delay, even if its message is lost. It
	// must exceed PingInterval. Default 150 ms.
	HealthWindow time.Duration
	// PublishTimeout bounds each PUBLISH attempt; a failed publish is retried
	// in order until it succeeds or the bus closes. Default 1 s.
	PublishTimeout time.Duration
	// QueueLen bounds the events waiting to be published while Redis is
	// unreachable. Beyond it the oldest are dropped; subscribers see the gap
	// in sequence numbers and flush. Default 10000.
	QueueLen int
	// OnApply, if set, is called after an event from another instance was
	// applied, with the time from its publication (by the origin's clock).
	OnApply func(e Event, lag time.Duration)
}
