package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type namelessCodec struct{ GoJSON }

func (namelessCodec) Name() string { return "" }

func TestOptionsValidation(t *testing.T) {
	ignoring := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer ignoring.Close()
	for name, o := range map[string]Options{
		"shards not power of two":  {L1Shards: 3},
		"entry over shard":         {L1MaxBytes: 1 << 20, L1Shards: 256, L1MaxEntryBytes: 4096},
		"negative ttl":             {L1TTL: -time.Second},
		"tombstone under load":     {TombstoneTTL: time.Second, LoadTimeout: 2 * time.Second},
		"jitter one":               {TTLJitter: 1},
		"namespace brace":          {Namespace: "a{b"},
		"namespace space":          {Namespace: "a b"},
		"codec without name":       {Codec: namelessCodec{}},
		"sub-ms L2 TTL":            {L2TTL: time.Microsecond},
		"client ignores deadlines": {Redis: ignoring},
	} {
		c, err := New(context.Background(), o)
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: err = %v, want ErrInvalidOptions", name, err)
		}
		if c != nil {
			t.Errorf("%s: returned a cache", name)
		}
	}
	// A short ReadTimeout bounds calls as well as a context deadline would.
	short := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer short.Close()
	if c, err := New(context.Background(), Options{Redis: short, RedisTimeout: time.Second}); err != nil {
		t.Fatalf("client with short ReadTimeout refused: %v", err)
	} else {
		c.Close()
	}
	c, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	defer c.Close()
	if c.opts.L1TTL != DefaultL1TTL || c.opts.Namespace != DefaultNamespace || c.opts.Codec.Name() != "bin2" {
		t.Fatalf("defaults not applied: %+v", c.opts)
	}
}

func TestFingerprint(t *testing.T) {
	type a struct {
		ID   int64
		Name string `json:"name"`
	}
	type b struct {
		ID   int64
		Name string `json:"full_name"` // tag changed
	}
	type rec struct {
		Next *rec
		V    int
	}
	if typeFingerprint(reflectTypeOf[a]()) == typeFingerprint(reflectTypeOf[b]()) {
		t.Fatal("tag change not fingerprinted")
	}
	first := typeFingerprint(reflectTypeOf[rec]()) // a recursive type terminates
	typeFingerprints.Delete(reflectTypeOf[rec]())
	if typeFingerprint(reflectTypeOf[rec]()) != first {
		t.Fatal("unstable")
	}
	if schemaOf(reflectTypeOf[a](), hashString("codec:json")) == schemaOf(reflectTypeOf[a](), hashString("codec:msgpack")) {
		t.Fatal("codec not in schema")
	}
}
