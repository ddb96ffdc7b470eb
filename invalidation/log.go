package invalidation

// reasonSilent is why the bus turns unhealthy when nothing came back in time.
const reasonSilent = "no heartbeat within HealthWindow"

// logHealth logs a health transition (b.healthMu held).
func (b *Bus) logHealth(ok bool, why string) {
	if ok {
		b.opts.Logger.Info("gormcache: invalidation bus healthy; L1 flushed and served again",
			"namespace", b.ns, "instance", b.id)
		return
	}
	b.opts.Logger.Warn("gormcache: invalidation bus unhealthy; L1 not served",
		"namespace", b.ns, "instance", b.id, "reason", why, "health_window", b.opts.HealthWindow)
}

// logSubscribed logs the n-th subscription confirmed.
func (b *Bus) logSubscribed(n uint64) {
	msg := "gormcache: invalidation bus subscribed"
	if n > 1 {
		msg = "gormcache: invalidation bus resubscribed; L1 flushed"
	}
	b.opts.Logger.Info(msg, "namespace", b.ns, "instance", b.id, "channel", b.channel, "subscriptions", n)
}
