package cache

import (
	"bytes"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []envelope{
		{kind: KindValue, version: 7, expiry: 123, schema: 99, payload: []byte(`{"a":1}`)},
		{kind: KindTombstone, version: 1<<53 - 1, expiry: 1},
		{kind: KindNotFound},
	} {
		b := appendEnvelope(nil, e)
		got, err := decodeEnvelope(b)
		if err != nil {
			t.Fatalf("%v: %v", e.kind, err)
		}
		if got.kind != e.kind || got.version != e.version || got.expiry != e.expiry || got.schema != e.schema || !bytes.Equal(got.payload, e.payload) {
			t.Fatalf("round trip: %+v != %+v", got, e)
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	good := appendEnvelope(nil, envelope{kind: KindValue, version: 1, payload: []byte("xy")})
	bad := map[string][]byte{
		"nil":             nil,
		"short":           good[:envHeaderLen-1],
		"magic":           append([]byte{0}, good[1:]...),
		"kind":            func() []byte { b := bytes.Clone(good); b[offKind] = 9; return b }(),
		"truncated":       good[:len(good)-1],
		"extended":        append(bytes.Clone(good), 'z'),
		"tomb payload":    func() []byte { b := bytes.Clone(good); b[offKind] = byte(KindTombstone); return b }(),
		"negative expiry": func() []byte { b := bytes.Clone(good); b[offExpiry] = 0x80; return b }(),
	}
	for name, b := range bad {
		if _, err := decodeEnvelope(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeEnvelope checks that no input makes the decoder panic or read
// past its input, and that whatever it accepts re-encodes to the same bytes.
// Seed corpus: testdata/fuzz/FuzzDecodeEnvelope.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, envelope{kind: KindValue, version: 3, expiry: 10, schema: 5, payload: []byte(`{"id":1}`)}))
	f.Add(appendEnvelope(nil, envelope{kind: KindTombstone, version: 9}))
	f.Add(appendEnvelope(nil, envelope{kind: KindNotFound}))
	f.Add([]byte{})
	f.Add([]byte{envMagic})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if again := appendEnvelope(nil, e); !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes do not round-trip:\n in %x\nout %x", b, again)
		}
	})
}
