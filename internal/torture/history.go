package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind string

// Operation kinds.
const (
	// KindRead is a repository Get outside any transaction.
	KindRead Kind = "read"
	// KindWrite is a versioned update (repository Update, alone or in a
	// committed transaction).
	KindWrite Kind = "write"
	// KindRollback is a transaction that updated a row and then rolled
	// back: its value must never be observed.
	KindRollback Kind = "rollback"
	// KindEpoch records that an instance's cache adopted a new namespace
	// epoch (Ver holds it). Writes whose invalidation could not reach Redis
	// are bounded from the writer's next epoch change (see Degraded).
	KindEpoch Kind = "epoch"
	// KindSuspect records that an instance (Inst) applied another
	// instance's announcement that its write of Key at version Ver was not
	// confirmed by Redis (invalidation.KindUnconfirmed): from then on that
	// instance must not serve an older version of the key (it evicted it
	// from L1 and stops reading it from Redis until confirmed).
	KindSuspect Kind = "suspect"
)

// Status is an operation's outcome.
type Status string

// Outcomes.
const (
	// StatusOK: the operation succeeded; a write with this status is
	// acknowledged.
	StatusOK Status = "ok"
	// StatusConflict: a versioned write matched no row (ErrConflict). It
	// wrote nothing.
	StatusConflict Status = "conflict"
	// StatusNotFound: a read answered "not found". Only the external
	// writer deletes rows (Op.Deleted): for any other row, and before the
	// first delete, this is always a wrong answer.
	StatusNotFound Status = "notfound"
	// StatusError: the operation failed (a killed connection, a timeout).
	// A failed write may or may not have committed: its version is
	// possibly visible, and never counts as acknowledged.
	StatusError Status = "error"
)

// Op is one recorded operation. Times are wall-clock Unix nanoseconds: every
// process runs on the same machine, so they are comparable across processes.
type Op struct {
	Inst   int    `json:"i"`           // instance number, from 1
	Key    int64  `json:"k,omitempty"` // row id
	Kind   Kind   `json:"t"`
	Call   int64  `json:"c"`           // when the call began
	Ret    int64  `json:"r"`           // when it returned
	Ver    uint64 `json:"v,omitempty"` // version read, written, or attempted (old+1) by a failed write
	Token  int64  `json:"o,omitempty"` // the unique token of the write that produced the value (reads), or this write's token
	Status Status `json:"s"`
	// Degraded marks an acknowledged write whose invalidation did not reach
	// Redis (the cache counted a pending epoch bump during the call): by the
	// library's contract, other instances are bounded only from the
	// writer's next epoch bump.
	Degraded bool `json:"d,omitempty"`
	// Unconfirmed marks an acknowledged write whose call returned an error
	// wrapping cache.ErrInvalidationUnconfirmed: it committed (so it counts
	// as acknowledged), its invalidation did not reach Redis in time.
	Unconfirmed bool `json:"u,omitempty"`
	// Outside marks a write made around the library (plain GORM, the
	// version left as it was or a DELETE and re-insert at version 1),
	// followed by Repository.Invalidate; Prev is the token of the row it
	// replaced (read under a row lock), so the checker orders such writes
	// by their chain of tokens instead of by version.
	Outside bool  `json:"x,omitempty"`
	Prev    int64 `json:"p,omitempty"`
	// Killed marks a write that committed and whose process was killed
	// (SIGKILL) before it invalidated anything: by the README, only the
	// TTLs bound it (CheckOptions.TTLAllowance).
	Killed bool `json:"kd,omitempty"`
	// Plain names the style of a write made with plain GORM through the
	// gormcache plugin (PlainUpdates, PlainExec, ...; see gormwriter.go).
	// It is a versioned write like the repository's, and checked as one;
	// the field only lets the report count them.
	Plain string `json:"g,omitempty"`
	// External names the style of a write made by the external writer
	// (external.go: another program on a plain connection, which only the
	// change feed covers; ExternalUpdate, ExternalDelete, ...). Such a
	// write is bounded by CheckOptions.Bound plus FeedBound. Its Inst is
	// ExternalInst.
	External string `json:"xw,omitempty"`
	// Deleted marks a write that deleted its row (an external DELETE). Its
	// Ver is the deleted row's version plus one, so the versions of a row
	// stay one total order through deletes and re-inserts (an INSERT after
	// it is at Ver+1); a read answering "not found" reads the latest such
	// delete called before it returned.
	Deleted bool   `json:"del,omitempty"`
	Err     string `json:"e,omitempty"`
}

// Duration is the operation's latency.
func (o Op) Duration() time.Duration { return time.Duration(o.Ret - o.Call) }

// Log records operations as JSON lines in a file. It is safe for concurrent
// use. Lines become visible to readers of the file at every Flush (the
// instances flush every few hundred milliseconds so the parent can check
// while they run).
type Log struct {
	mu  sync.Mutex // protects w, enc and n
	f   *os.File
	w   *bufio.Writer
	enc *json.Encoder
	n   int64
}

// CreateLog creates (truncating) the log file at path.
func CreateLog(path string) (*Log, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	return &Log{f: f, w: w, enc: json.NewEncoder(w)}, nil
}

// Record appends op.
func (l *Log) Record(op Op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enc.Encode(op) == nil {
		l.n++
	}
}

// Len returns the number of operations recorded.
func (l *Log) Len() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Flush writes buffered lines to the file.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Tail reads a log file that is still being written, returning only complete
// lines; each call returns the operations appended since the previous one.
type Tail struct {
	path string
	off  int64
}

// NewTail returns a Tail of the log at path, from its beginning.
func NewTail(path string) *Tail { return &Tail{path: path} }

// Next returns the complete operations appended since the last call.
func (t *Tail) Next() ([]Op, error) {
	f, err := os.Open(t.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, nil
	}
	ops, err := decodeOps(b[:end+1])
	if err != nil {
		return nil, fmt.Errorf("%s at offset %d: %w", t.path, t.off, err)
	}
	t.off += int64(end + 1)
	return ops, nil
}

// ReadOps reads every operation of the log files at paths.
func ReadOps(paths ...string) ([]Op, error) {
	var all []Op
	for _, p := range paths {
		ops, err := NewTail(p).Next()
		if err != nil {
			return nil, err
		}
		all = append(all, ops...)
	}
	return all, nil
}

func decodeOps(b []byte) ([]Op, error) {
	ops := make([]Op, 0, bytes.Count(b, []byte{'\n'}))
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b[:i]
		b = b[i+1:]
		if len(line) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(line, &op); err != nil {
			return nil, fmt.Errorf("bad line %q: %w", line, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}
