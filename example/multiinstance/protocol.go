package main

import (
	"time"

	"github.com/gormcache/gormcache/repository"
)

// Product is the demo's model.
type Product struct {
	ID         int64  `gorm:"primaryKey"`
	SKU        string `gorm:"size:64"`
	Name       string `gorm:"size:200"`
	PriceCents int64
	UpdatedAt  time.Time
	repository.Version
}

// TableName keeps the demo's table apart from anything of yours.
func (Product) TableName() string { return "gormcache_demo_products" }

// The parent drives each instance with one JSON request per line on its
// stdin and reads one JSON response per line from its stdout.

type request struct {
	Cmd      string        `json:"cmd"` // read, update, watch, stampede, wait-recovery, load, stats, feed-start, feed-status, feed-stop, watch-price, quit
	IDs      []int64       `json:"ids,omitempty"`
	ID       int64         `json:"id,omitempty"`
	Version  uint64        `json:"version,omitempty"`
	Since    int64         `json:"since,omitempty"` // unix nanoseconds
	N        int           `json:"n,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Writer   bool          `json:"writer,omitempty"`
	Rows     int64         `json:"rows,omitempty"`
	Slot     string        `json:"slot,omitempty"`  // the relay's slot and publication (feed-start)
	Price    int64         `json:"price,omitempty"` // the price to wait for (watch-price)
}

type response struct {
	Err      string        `json:"err,omitempty"`
	Tiers    []string      `json:"tiers,omitempty"`
	Versions []uint64      `json:"versions,omitempty"`
	Version  uint64        `json:"version,omitempty"`
	At       int64         `json:"at,omitempty"` // unix nanoseconds
	Took     time.Duration `json:"took,omitempty"`
	Queries  int64         `json:"queries,omitempty"`
	Stats    *summary      `json:"stats,omitempty"`
	Prices   []int64       `json:"prices,omitempty"`
	IsLeader bool          `json:"is_leader,omitempty"` // the instance's relay holds the lease
	Token    int64         `json:"token,omitempty"`     // its fencing token
	FeedErr  string        `json:"feed_err,omitempty"`  // the last error its relay recovered from
}

// summary is what an instance reports at the end.
type summary struct {
	L1, L2, DBReads               uint64
	Queries                       int64
	Sent, Received, Applied       uint64
	Subscribes, Recoveries, Gaps  uint64
	LagP50, LagP99                time.Duration
	Reads, Checked, Stale, Writes int64
	Conflicts, Degraded           int64
	StaleExample                  string // the first stale read, if any
}
