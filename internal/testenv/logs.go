package testenv

import (
	"context"
	"log/slog"
	"sync"
)

// LogRecorder is a slog.Handler that keeps every record, for tests that
// check what a component logs (by level and attributes, never by message).
type LogRecorder struct {
	mu   sync.Mutex // protects recs
	recs []slog.Record
}

// Enabled accepts every level.
func (h *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps a copy of r.
func (h *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// WithAttrs returns h: attributes given to the logger are not recorded.
func (h *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup returns h.
func (h *LogRecorder) WithGroup(string) slog.Handler { return h }

// Records returns a copy of the records kept so far.
func (h *LogRecorder) Records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}

// Matching returns the records at level whose attributes include every key
// of attrs with that value ("" matches any value).
func (h *LogRecorder) Matching(level slog.Level, attrs map[string]string) []slog.Record {
	var out []slog.Record
	for _, r := range h.Records() {
		if r.Level != level {
			continue
		}
		got := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value.String(); return true })
		ok := true
		for k, v := range attrs {
			if g, has := got[k]; !has || v != "" && g != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}
