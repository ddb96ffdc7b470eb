package cache

import "time"

// Clock supplies the current time. Inject one in Options.Clock to test expiry
// without sleeping.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
