package invalidation

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gormcache/gormcache/cache"
)

func sampleEvent() Event {
	return Event{Kind: KindInvalidate, Namespace: "app", Origin: "a1", Seq: 7, SentAt: 1795734339875000000,
		Keys: []cache.Invalidation{{Key: "users:1", Version: 3}, {Key: "users:email=a%7Bb", Version: 0}}}
}

func TestEventRoundTrip(t *testing.T) {
	for _, e := range []Event{sampleEvent(), {Kind: KindEpoch, Namespace: "n", Origin: "o", Seq: 1, SentAt: -5, Epoch: 1795734339875}} {
		b, err := Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, e)
		}
	}
}

func TestEventRejects(t *testing.T) {
	good, _ := Encode(nil, sampleEvent())
	bad := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("xx"), good[2:]...),
		"version":   append([]byte{magic0, magic1, 9}, good[3:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"json":      []byte(`{"keys":["users:1"]}`),
		"overlong":  append([]byte{magic0, magic1, formatVersion, byte(KindEpoch), 0x81, 0x00}, good[5:]...),
		"huge count": func() []byte {
			e := sampleEvent()
			e.Keys = nil
			e.Kind = KindEpoch
			e.Epoch = 1
			b, _ := Encode(nil, e)
			return append(b[:len(b)-1], 0xff, 0xff, 0xff, 0xff, 0x0f)
		}(),
	}
	for name, b := range bad {
		if _, err := Decode(b); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for name, e := range map[string]Event{
		"no keys":   {Kind: KindInvalidate, Namespace: "n", Origin: "o", Seq: 1},
		"seq 0":     {Kind: KindEpoch, Namespace: "n", Origin: "o", Epoch: 1},
		"no origin": {Kind: KindEpoch, Namespace: "n", Seq: 1, Epoch: 1},
		"long key":  {Kind: KindInvalidate, Namespace: "n", Origin: "o", Seq: 1, Keys: []cache.Invalidation{{Key: strings.Repeat("k", cache.MaxStoredKeyLen+1)}}},
		"kind":      {Kind: 9, Namespace: "n", Origin: "o", Seq: 1},
	} {
		if _, err := Encode(nil, e); !errors.Is(err, ErrBadEvent) {
			t.Errorf("encode %s: err = %v", name, err)
		}
	}
}

// FuzzDecode checks that no payload makes Decode panic, and that whatever it
// accepts re-encodes to the same bytes (so nothing is silently changed, and
// no key other than the encoded ones can be evicted). Seed corpus:
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(nil, sampleEvent())
	epoch, _ := Encode(nil, Event{Kind: KindEpoch, Namespace: "n", Origin: "o", Seq: 1, Epoch: 9})
	f.Add(good)
	f.Add(epoch)
	f.Add([]byte{})
	f.Add([]byte("gI\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(nil, e)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted event does not round-trip: %v\n in %x\nout %x", err, b, again)
		}
	})
}
