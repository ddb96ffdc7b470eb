package fidelity

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York and Asia/Tokyo wherever the suite runs

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"gorm.io/datatypes"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/repository"
)

func ptr[T any](v T) *T { return &v }

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

var (
	newYork = mustZone("America/New_York")
	tokyo   = mustZone("Asia/Tokyo")
	plus530 = time.FixedZone("+05:30", 5*3600+30*60)
	negZero = math.Copysign(0, -1)
)

// shapes are the model shapes of the suite, each seeded in tables of its own.
func shapes() []suiteShape {
	return []suiteShape{
		softDeleteShape(), uuidShape(), stringKeyShape(), compositeShape(), intsShape(), floatsShape(),
		timesShape(), nullsShape(), bytesShape(), unicodeShape(), namedShape(), valuerShape(),
		serializerShape(), datatypesShape(), decimalShape(), embeddedShape(), hooksShape(),
		hasManyShape(), belongsToShape(), pointersShape(), interfaceShape(), bigShape(),
	}
}

// --- gorm.Model with soft delete -------------------------------------------

type SoftUser struct {
	gorm.Model
	Email string `gorm:"uniqueIndex"`
	Name  string
	Age   int
	Nick  *string
}

func softDeleteShape() suiteShape {
	return &shape[SoftUser, uint]{
		name: "SoftDelete",
		rows: func() []SoftUser {
			return []SoftUser{
				{Email: "ada@example.com", Name: "Ada", Age: 36, Nick: ptr("ada")},
				{Email: "zero@example.com"},
				{Email: "gone@example.com", Name: "Deleted", Age: 1},
				{Email: "ünï{c}:%@example.com", Name: "Ünï", Nick: ptr("")},
				{Email: "gone-too@example.com", Name: "Deleted too"},
			}
		},
		deleted: []int{2, 4},
		missing: 999999,
		unique:  "email",
		change:  func(v *SoftUser) string { v.Name += "·changed"; return "name" },
	}
}

// --- uuid.UUID primary key ---------------------------------------------------

type UUIDRow struct {
	ID    uuid.UUID     `gorm:"type:uuid;primaryKey"`
	Code  string        `gorm:"uniqueIndex"`
	Ref   uuid.UUID     `gorm:"type:uuid"`
	Opt   *uuid.UUID    `gorm:"type:uuid"`
	NRef  uuid.NullUUID `gorm:"type:uuid"`
	Label string
}

func uuidShape() suiteShape {
	return &shape[UUIDRow, uuid.UUID]{
		name: "UUIDKey",
		rows: func() []UUIDRow {
			return []UUIDRow{
				{ID: uuid.MustParse("0b9e3c4c-5e8e-4f0a-9a8c-7f6d5e4c3b2a"), Code: "alpha", Ref: uuid.MustParse("11111111-2222-3333-4444-555555555555"),
					Opt: ptr(uuid.MustParse("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")), NRef: uuid.NullUUID{UUID: uuid.MustParse("01234567-89ab-cdef-0123-456789abcdef"), Valid: true}, Label: "a"},
				{ID: uuid.MustParse("ffffffff-ffff-ffff-ffff-ffffffffffff"), Code: "max"},
				{ID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), Code: "{one}:%", Ref: uuid.Nil, NRef: uuid.NullUUID{Valid: true}},
			}
		},
		missing: uuid.MustParse("deadbeef-dead-beef-dead-beefdeadbeef"),
		unique:  "code",
		change: func(v *UUIDRow) string {
			v.Ref = uuid.MustParse("99999999-9999-9999-9999-999999999999")
			return "ref"
		},
	}
}

// --- string primary key ------------------------------------------------------

type StrKey struct {
	ID   string `gorm:"primaryKey"`
	Slug string `gorm:"unique"`
	Note string
}

func stringKeyShape() suiteShape {
	return &shape[StrKey, string]{
		name: "StringKey",
		rows: func() []StrKey {
			return []StrKey{
				{ID: "a:b", Slug: "s:1", Note: "colon"},
				{ID: "{tag}", Slug: "{s2}", Note: "braces: a Redis hash tag"},
				{ID: "100%", Slug: "s%3", Note: "percent"},
				{ID: "a{b", Slug: "s{4", Note: "escapes to a%7Bb"},
				{ID: "a%7Bb", Slug: "s%7B4", Note: "the escape itself"},
				{ID: "ünï:{ç}%25", Slug: "ünï:{ç}", Note: "unicode"},
				{ID: "%3A", Slug: "%3A", Note: "composite keys' escape of ':'"},
				{ID: "👩‍💻 key", Slug: "👩‍💻", Note: ""},
				{ID: "s1", Slug: "slug=s1", Note: "a row whose key looks like a GetBy mapping"},
				{ID: "slug=s1", Slug: "s1", Note: "and the mapping of another's slug"},
			}
		},
		missing: "no:{such}%row",
		unique:  "slug",
		change:  func(v *StrKey) string { v.Note += "·changed"; return "note" },
	}
}

// --- composite primary key ---------------------------------------------------

type Member struct {
	OrgID  int64  `gorm:"primaryKey;autoIncrement:false"`
	UserID int64  `gorm:"primaryKey;autoIncrement:false"`
	Handle string `gorm:"uniqueIndex"`
	Role   string
	Since  *time.Time
}

type MemberKey struct{ OrgID, UserID int64 }

func compositeShape() suiteShape {
	return &shape[Member, MemberKey]{
		name: "CompositeKey",
		rows: func() []Member {
			return []Member{
				{OrgID: 1, UserID: 1, Handle: "one-one", Role: "owner", Since: ptr(time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC))},
				{OrgID: 1, UserID: 12, Handle: "one-twelve"},
				{OrgID: 11, UserID: 2, Handle: "eleven-two", Role: "a:b"},
				{OrgID: -5, UserID: math.MaxInt64, Handle: "neg-max", Role: "{x}"},
				{OrgID: math.MinInt64, UserID: 3, Handle: "min-three"},
			}
		},
		missing: MemberKey{OrgID: 1, UserID: 2},
		unique:  "handle",
		change:  func(v *Member) string { v.Role += "·changed"; return "role" },
	}
}

// --- integer extremes --------------------------------------------------------

type Ints struct {
	ID     int64 `gorm:"primaryKey"`
	Serial int32 `gorm:"unique"`
	I8     int8
	I16    int16
	I32    int32
	I64    int64
	I      int
	U8     uint8
	U16    uint16
	U32    uint32
	U64    uint64
	U      uint
	PI8    *int8
	PU32   *uint32
}

func intsShape() suiteShape {
	return &shape[Ints, int64]{
		name: "Integers",
		rows: func() []Ints {
			return []Ints{
				{ID: 1, Serial: 0},
				{ID: 2, Serial: math.MaxInt32, I8: math.MaxInt8, I16: math.MaxInt16, I32: math.MaxInt32, I64: math.MaxInt64, I: math.MaxInt64,
					U8: math.MaxUint8, U16: math.MaxUint16, U32: math.MaxUint32, U64: math.MaxInt64, U: math.MaxInt64,
					PI8: ptr(int8(math.MaxInt8)), PU32: ptr(uint32(math.MaxUint32))},
				{ID: -7, Serial: math.MinInt32, I8: math.MinInt8, I16: math.MinInt16, I32: math.MinInt32, I64: math.MinInt64, I: math.MinInt64,
					U8: 1, U16: 1, U32: 1, U64: 1, U: 1, PI8: ptr(int8(math.MinInt8)), PU32: ptr(uint32(0))},
				{ID: math.MaxInt64, Serial: -1, I8: -1, I16: -1, I32: -1, I64: -1, I: -1, U8: 128, U16: 32768, U32: 1 << 31, U64: 1 << 62, U: 1 << 32},
			}
		},
		missing: 12345,
		unique:  "serial",
		change:  func(v *Ints) string { v.I32 ^= 1; return "i32" },
	}
}

// --- floats ------------------------------------------------------------------

type Floats struct {
	ID   int64
	F64  float64         `gorm:"type:double precision"`
	F32  float32         `gorm:"type:real"`
	FNum float64         // GORM's default for float64: numeric
	PF   *float64        `gorm:"type:double precision"`
	NF   sql.NullFloat64 `gorm:"type:double precision"`
	Tag  string
}

func floatsShape() suiteShape {
	nan32 := float32(math.NaN())
	return &shape[Floats, int64]{
		name: "Floats",
		rows: func() []Floats {
			return []Floats{
				{F64: math.NaN(), F32: nan32, FNum: math.NaN(), PF: ptr(math.NaN()), NF: sql.NullFloat64{Float64: math.NaN(), Valid: true}, Tag: "nan"},
				{F64: math.Inf(1), F32: float32(math.Inf(1)), FNum: math.Inf(1), PF: ptr(math.Inf(1)), NF: sql.NullFloat64{Float64: math.Inf(1), Valid: true}, Tag: "+inf"},
				{F64: math.Inf(-1), F32: float32(math.Inf(-1)), FNum: math.Inf(-1), PF: ptr(math.Inf(-1)), NF: sql.NullFloat64{Float64: math.Inf(-1), Valid: true}, Tag: "-inf"},
				{F64: negZero, F32: float32(negZero), FNum: negZero, PF: ptr(negZero), NF: sql.NullFloat64{Float64: negZero, Valid: true}, Tag: "-0"},
				{Tag: "zero, NULLs"},
				{F64: math.MaxFloat64, F32: math.MaxFloat32, FNum: math.MaxFloat64, PF: ptr(-math.MaxFloat64), NF: sql.NullFloat64{Float64: 1, Valid: true}, Tag: "max"},
				{F64: math.SmallestNonzeroFloat64, F32: math.SmallestNonzeroFloat32, FNum: 0.1, PF: ptr(1.1), NF: sql.NullFloat64{Valid: true}, Tag: "tiny"},
			}
		},
		missing: 424242,
		change:  func(v *Floats) string { v.Tag += "·changed"; return "tag" },
		check: func(t *testing.T, what string, got, want *Floats) {
			t.Helper()
			if d := signedZeroDiffs(got, want); d != nil {
				t.Errorf("%s: signed zeros differ from GORM's result:\n\t%s", what, strings.Join(d, "\n\t"))
			}
		},
	}
}

// --- times -------------------------------------------------------------------

type Times struct {
	ID    int64
	At    time.Time
	Zero  time.Time
	Old   time.Time
	PAt   *time.Time
	TS    time.Time  `gorm:"type:timestamp"`
	Day   time.Time  `gorm:"type:date"`
	PDay  *time.Time `gorm:"type:date"`
	Label string
}

func timesShape() suiteShape {
	return &shape[Times, int64]{
		name: "Times",
		rows: func() []Times {
			return []Times{
				{At: time.Date(2024, 3, 10, 1, 59, 59, 123456789, plus530), Old: time.Date(1850, 3, 4, 5, 6, 7, 8009, newYork),
					TS: time.Date(2024, 6, 1, 12, 34, 56, 987654321, tokyo), Day: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), Label: "zone, ns, pre-1900"},
				{At: time.Date(2024, 11, 3, 1, 30, 0, 999, newYork), Old: time.Date(1883, 11, 18, 12, 3, 57, 0, newYork),
					PAt: ptr(time.Date(2023, 7, 1, 23, 59, 59, 999999000, tokyo)), TS: time.Date(1850, 1, 1, 0, 0, 0, 1000, time.UTC),
					Day: time.Date(1850, 1, 1, 0, 0, 0, 0, newYork), PDay: ptr(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), Label: "DST fold, 1883"},
				{At: time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC), Old: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
					TS: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), Day: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Label: "edges"},
				{Label: "all zero"},
			}
		},
		missing: 424242,
		change:  func(v *Times) string { v.Label += "·changed"; return "label" },
	}
}

// --- sql.Null* ---------------------------------------------------------------

type Nulls struct {
	ID    int64
	NS    sql.NullString
	NI64  sql.NullInt64
	NI32  sql.NullInt32
	NI16  sql.NullInt16
	NB    sql.NullByte
	NF    sql.NullFloat64 `gorm:"type:double precision"`
	NBool sql.NullBool
	NT    sql.NullTime
	GS    sql.Null[string]
	GI    sql.Null[int64]
	Label string
}

func nullsShape() suiteShape {
	return &shape[Nulls, int64]{
		name: "SQLNull",
		rows: func() []Nulls {
			return []Nulls{
				{Label: "all NULL"},
				{NS: sql.NullString{Valid: true}, NI64: sql.NullInt64{Valid: true}, NI32: sql.NullInt32{Valid: true}, NI16: sql.NullInt16{Valid: true},
					NB: sql.NullByte{Valid: true}, NF: sql.NullFloat64{Valid: true}, NBool: sql.NullBool{Valid: true}, NT: sql.NullTime{Valid: true},
					GS: sql.Null[string]{Valid: true}, GI: sql.Null[int64]{Valid: true}, Label: "all set to zero values"},
				{NS: sql.NullString{String: "ünï{}:%", Valid: true}, NI64: sql.NullInt64{Int64: math.MinInt64, Valid: true},
					NI32: sql.NullInt32{Int32: math.MaxInt32, Valid: true}, NI16: sql.NullInt16{Int16: math.MinInt16, Valid: true},
					NB: sql.NullByte{Byte: 255, Valid: true}, NF: sql.NullFloat64{Float64: -1.5, Valid: true}, NBool: sql.NullBool{Bool: true, Valid: true},
					NT: sql.NullTime{Time: time.Date(1850, 3, 4, 5, 6, 7, 8000, newYork), Valid: true},
					GS: sql.Null[string]{V: "generic", Valid: true}, GI: sql.Null[int64]{V: math.MaxInt64, Valid: true}, Label: "all set"},
			}
		},
		missing: 424242,
		change:  func(v *Nulls) string { v.Label += "·changed"; return "label" },
	}
}

// --- []byte ------------------------------------------------------------------

type Blob struct {
	ID    int64
	Data  []byte
	Raw   []byte `gorm:"type:bytea"`
	Label string
}

func bytesShape() suiteShape {
	return &shape[Blob, int64]{
		name: "Bytes",
		rows: func() []Blob {
			large := make([]byte, 4096)
			for i := range large {
				large[i] = byte(i * 7)
			}
			return []Blob{
				{Label: "NULL"},
				{Data: []byte{}, Raw: []byte{}, Label: "empty"},
				{Data: []byte{0, 1, 2, 0xfe, 0xff, 0}, Raw: []byte("ünï{}"), Label: "data"},
				{Data: large, Label: "4 KiB"},
			}
		},
		missing: 424242,
		change: func(v *Blob) string {
			v.Data = append(v.Data, 0x42)
			return "data"
		},
	}
}

// --- unicode -----------------------------------------------------------------

type Text struct {
	ID    int64
	Title string `gorm:"uniqueIndex"`
	Body  string
	PS    *string
}

func unicodeShape() suiteShape {
	return &shape[Text, int64]{
		name: "Unicode",
		rows: func() []Text {
			return []Text{
				{Title: "👩‍👩‍👧‍👦 family", Body: "🇯🇵🇺🇦 flags, 🏳️‍🌈, 👍🏽", PS: ptr("🙂")},
				{Title: "e\u0301 (NFD)", Body: "combining: a\u0308\u0323 Z\u0351\u0352\u0353", PS: ptr("")},
				{Title: "é (NFC)", Body: "precomposed"},
				{Title: "שלום עולם", Body: "RTL: مرحبا بالعالم \u202Eevil\u202C \u200F\u200E", PS: ptr("\u200Bzero\u200Dwidth\uFEFF")},
				{Title: "", Body: ""},
				{Title: "CJK 漢字かなカナ한국어", Body: strings.Repeat("𝄞𠜎", 100)},
			}
		},
		missing: 424242,
		unique:  "title",
		change:  func(v *Text) string { v.Body += "·changed"; return "body" },
	}
}

// --- named types -------------------------------------------------------------

type (
	OrderID int64
	Status  string
	Level   int16
	Flags   uint32
	Ratio   float64
	Toggle  bool
)

type Named struct {
	ID  OrderID `gorm:"primaryKey"`
	St  Status  `gorm:"uniqueIndex"`
	Lv  Level
	Fl  Flags
	Ra  Ratio `gorm:"type:double precision"`
	On  Toggle
	PSt *Status
	PLv *Level
}

func namedShape() suiteShape {
	return &shape[Named, OrderID]{
		name: "NamedTypes",
		rows: func() []Named {
			return []Named{
				{St: "active", Lv: math.MaxInt16, Fl: math.MaxUint32, Ra: 0.5, On: true, PSt: ptr(Status("p")), PLv: ptr(Level(-1))},
				{St: "", Lv: math.MinInt16},
				{St: "ünï:{x}%", Ra: Ratio(math.Inf(-1)), PSt: ptr(Status(""))},
			}
		},
		missing: 424242,
		unique:  "st",
		change:  func(v *Named) string { v.Lv ^= 1; return "lv" },
	}
}

// --- sql.Scanner / driver.Valuer types ---------------------------------------

// Point is stored as text "(x,y)"; its state is exported.
type Point struct{ X, Y float64 }

func (p Point) Value() (driver.Value, error) {
	return fmt.Sprintf("(%s,%s)", fmtFloat(p.X), fmtFloat(p.Y)), nil
}

func fmtFloat(f float64) string { return fmt.Sprintf("%v", f) }

func (p *Point) Scan(src any) error {
	var s string
	switch x := src.(type) {
	case nil:
		*p = Point{}
		return nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return fmt.Errorf("Point: cannot scan %T", src)
	}
	_, err := fmt.Sscanf(s, "(%g,%g)", &p.X, &p.Y)
	return err
}

// Money is stored as bigint cents; its only state is unexported.
type Money struct{ cents int64 }

func (m Money) Value() (driver.Value, error) { return m.cents, nil }

func (m *Money) Scan(src any) error {
	switch x := src.(type) {
	case nil:
		m.cents = 0
	case int64:
		m.cents = x
	default:
		return fmt.Errorf("Money: cannot scan %T", src)
	}
	return nil
}

type Valued struct {
	ID     int64
	At     Point  `gorm:"type:text"`
	PAt    *Point `gorm:"type:text"`
	Price  Money  `gorm:"type:bigint"`
	PPrice *Money `gorm:"type:bigint"`
	Label  string
}

func valuerShape() suiteShape {
	return &shape[Valued, int64]{
		name: "ScannerValuer",
		rows: func() []Valued {
			return []Valued{
				{At: Point{1.5, -2}, PAt: &Point{}, Price: Money{12345}, PPrice: &Money{-1}, Label: "set"},
				{Label: "zero and nil"},
				{At: Point{math.MaxFloat64, 1e-300}, Price: Money{math.MinInt64}, PPrice: &Money{math.MaxInt64}, Label: "extremes"},
			}
		},
		missing: 424242,
		change:  func(v *Valued) string { v.Label += "·changed"; return "label" },
	}
}

// --- serializer:json ---------------------------------------------------------

type Prefs struct {
	Theme string   `json:"theme"`
	Size  int      `json:"size,omitempty"`
	Tags  []string `json:"tags,omitempty"`
	Inner *Prefs   `json:"inner,omitempty"`
}

type Serial struct {
	ID    int64
	Attrs map[string]any `gorm:"serializer:json;type:jsonb"`
	Tags  []string       `gorm:"serializer:json"`
	Any   any            `gorm:"serializer:json"`
	Prefs *Prefs         `gorm:"serializer:json"`
	Label string
}

func serializerShape() suiteShape {
	return &shape[Serial, int64]{
		name: "SerializerJSON",
		rows: func() []Serial {
			return []Serial{
				{Label: "nil: NULL"},
				{Attrs: map[string]any{}, Tags: []string{}, Any: "", Prefs: &Prefs{}, Label: "empty"},
				{Attrs: map[string]any{"n": 1.5, "s": "ü{}:%", "l": []any{1.0, "x", nil}, "o": map[string]any{"k": true}},
					Tags: []string{"a", "", ":{}%", "🙂"}, Any: []any{1.0, "two", map[string]any{"three": 3.0}},
					Prefs: &Prefs{Theme: "dark", Size: 3, Tags: []string{"t"}, Inner: &Prefs{Theme: "inner"}}, Label: "full"},
			}
		},
		missing: 424242,
		change:  func(v *Serial) string { v.Tags = append(v.Tags, "changed"); return "tags" },
	}
}

// --- gorm.io/datatypes -------------------------------------------------------

type DT struct {
	ID    int64
	Doc   datatypes.JSON
	Map   datatypes.JSONMap
	Label string
}

func datatypesShape() suiteShape {
	return &shape[DT, int64]{
		name: "Datatypes",
		rows: func() []DT {
			return []DT{
				{Label: "SQL NULL"},
				{Doc: datatypes.JSON(`{"big": 12345678901234567890, "f": 1.5, "neg": -0.0, "s": "ü{}"}`),
					Map: datatypes.JSONMap{"big": json.Number("12345678901234567890"), "f": 1.5, "nested": map[string]any{"a": []any{json.Number("1"), nil}}}, Label: "numbers"},
				{Doc: datatypes.JSON(`[]`), Map: datatypes.JSONMap{}, Label: "empty"},
				{Doc: datatypes.JSON(`null`), Map: datatypes.JSONMap{"u": "ü"}, Label: "JSON null"},
				{Doc: datatypes.JSON(`"str"`), Map: datatypes.JSONMap{"big": json.Number("-98765432109876543210.5")}, Label: "string"},
			}
		},
		missing: 424242,
		change:  func(v *DT) string { v.Label += "·changed"; return "label" },
	}
}

// --- shopspring/decimal ------------------------------------------------------

type Dec struct {
	ID     int64
	Amount decimal.Decimal     `gorm:"type:numeric(30,10)"`
	Opt    decimal.NullDecimal `gorm:"type:numeric(30,10)"`
	Label  string
}

func decimalShape() suiteShape {
	return &shape[Dec, int64]{
		name: "Decimal",
		rows: func() []Dec {
			return []Dec{
				{Label: "zero, NULL"},
				{Amount: decimal.RequireFromString("1.5"), Opt: decimal.NewNullDecimal(decimal.RequireFromString("1.5")), Label: "1.5"},
				{Amount: decimal.RequireFromString("-12345678901234567890.0123456789"), Opt: decimal.NewNullDecimal(decimal.RequireFromString("0.0000000001")), Label: "wide"},
				{Amount: decimal.RequireFromString("99999999999999999999.9999999999"), Opt: decimal.NullDecimal{Valid: true}, Label: "max"},
			}
		},
		missing: 424242,
		change: func(v *Dec) string {
			if v.Amount.IsPositive() {
				v.Amount = v.Amount.Sub(decimal.NewFromInt(1))
			} else {
				v.Amount = v.Amount.Add(decimal.NewFromInt(1))
			}
			return "amount"
		},
	}
}

// --- embedded structs --------------------------------------------------------

type Address struct {
	Street string
	City   string
	Zip    *string
}

type Geo struct {
	Lat  float64 `gorm:"type:double precision"`
	Lng  float64 `gorm:"type:double precision"`
	Note string
}

type Embed struct {
	ID    int64
	Home  Address  `gorm:"embedded;embeddedPrefix:home_"`
	Work  *Address `gorm:"embedded;embeddedPrefix:work_"`
	Geo   *Geo     `gorm:"embedded;embeddedPrefix:geo_"`
	Label string
}

func embeddedShape() suiteShape {
	return &shape[Embed, int64]{
		name: "Embedded",
		rows: func() []Embed {
			return []Embed{
				{Home: Address{Street: "1 Main", City: "Springfield", Zip: ptr("12345")}, Work: &Address{Street: "2 Side", City: "Shelbyville"},
					Geo: &Geo{Lat: 40.7, Lng: -74, Note: "ny"}, Label: "all set"},
				{Home: Address{City: "Nowhere"}, Label: "nil pointers"},
				{Work: &Address{}, Geo: &Geo{}, Label: "zero pointees"},
			}
		},
		missing: 424242,
		change:  func(v *Embed) string { v.Home.City += "·changed"; return "home_city" },
	}
}

// --- hooks, unexported and json:"-" fields, a version column -------------------

type Acct struct {
	ID           int64
	Email        string `gorm:"uniqueIndex"`
	Name         string
	PasswordHash string `json:"-"`
	Balance      Money  `gorm:"type:bigint"`
	Display      string `gorm:"-"` // set by AfterFind
	secret       string // set by AfterFind
	finds        int    // AfterFind runs once per read
	repository.Version
}

func (a *Acct) AfterFind(*gorm.DB) error {
	a.Display = a.Name + " <" + a.Email + ">"
	a.secret = "hash:" + a.PasswordHash
	a.finds++
	return nil
}

func hooksShape() suiteShape {
	return &shape[Acct, int64]{
		name: "HooksHidden",
		rows: func() []Acct {
			return []Acct{
				{Email: "ada@example.com", Name: "Ada", PasswordHash: "$2a$10$abcdefghijklmnopqrstuv", Balance: Money{12345}, Version: 1},
				{Email: "bob@example.com", Version: 1},
				{Email: "eve@example.com", Name: "Eve", PasswordHash: "secret:{}%", Balance: Money{-1}, Version: 7},
			}
		},
		missing: 424242,
		unique:  "email",
		change:  func(v *Acct) string { v.Name += "·changed"; return "name" },
	}
}

// --- has-many and belongs-to (associations not preloaded) ----------------------

type Author struct {
	ID    int64
	Name  string `gorm:"uniqueIndex"`
	Books []Book
}

type Book struct {
	ID       int64
	Title    string
	AuthorID *int64
	Author   *Author
}

func hasManyShape() suiteShape {
	return &shape[Author, int64]{
		name:  "HasMany",
		extra: []any{&Author{}, &Book{}},
		rows: func() []Author {
			return []Author{{Name: "Le Guin"}, {Name: "Borges"}, {Name: "no books"}}
		},
		after: func(t *testing.T, db *gorm.DB, rows []Author) {
			for i, a := range rows[:2] {
				for j := 0; j < 2; j++ {
					if err := db.Create(&Book{Title: fmt.Sprintf("book %d.%d", i, j), AuthorID: ptr(a.ID)}).Error; err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		missing: 424242,
		unique:  "name",
		change: func(v *Author) string {
			v.Books = []Book{{Title: "new child 1"}, {Title: "new child 2", AuthorID: ptr(v.ID)}}
			v.Name += "·changed"
			return "name"
		},
		count: &Book{},
	}
}

func belongsToShape() suiteShape {
	return &shape[Book, int64]{
		name:  "BelongsTo",
		extra: []any{&Author{}},
		before: func(t *testing.T, db *gorm.DB) {
			for _, a := range []Author{{ID: 1, Name: "first"}, {ID: 2, Name: "second"}} {
				if err := db.Create(&a).Error; err != nil {
					t.Fatal(err)
				}
			}
		},
		rows: func() []Book {
			return []Book{{Title: "one", AuthorID: ptr(int64(1))}, {Title: "two", AuthorID: ptr(int64(2))}, {Title: "orphan"}}
		},
		missing: 424242,
		change: func(v *Book) string {
			v.Author = &Author{Name: "phantom"}
			v.Title += "·changed"
			return "title"
		},
		count: &Author{},
	}
}

// --- pointers ----------------------------------------------------------------

type Ptrs struct {
	ID    int64
	PS    *string
	PI    *int
	PI64  *int64
	PB    *bool
	PF    *float64 `gorm:"type:double precision"`
	PU16  *uint16
	PI8   *int8
	PT    *time.Time
	Meta  *Prefs    `gorm:"serializer:json"`
	PTags *[]string `gorm:"serializer:json"`
	Label string
}

func pointersShape() suiteShape {
	return &shape[Ptrs, int64]{
		name: "Pointers",
		rows: func() []Ptrs {
			return []Ptrs{
				{Label: "all nil"},
				{PS: ptr(""), PI: ptr(0), PI64: ptr(int64(0)), PB: ptr(false), PF: ptr(0.0), PU16: ptr(uint16(0)), PI8: ptr(int8(0)),
					PT: ptr(time.Time{}), Meta: &Prefs{}, PTags: &[]string{}, Label: "all zero pointees"},
				{PS: ptr("ü{}"), PI: ptr(-1), PI64: ptr(int64(math.MaxInt64)), PB: ptr(true), PF: ptr(math.NaN()), PU16: ptr(uint16(math.MaxUint16)),
					PI8: ptr(int8(math.MinInt8)), PT: ptr(time.Date(1850, 3, 4, 5, 6, 7, 8000, newYork)),
					Meta: &Prefs{Theme: "t", Inner: &Prefs{Size: 2}}, PTags: &[]string{"x", ""}, Label: "set"},
			}
		},
		missing: 424242,
		change:  func(v *Ptrs) string { v.Label += "·changed"; return "label" },
	}
}

// --- interface fields ----------------------------------------------------------

type Iface struct {
	ID    int64
	A     any `gorm:"serializer:json"`
	B     any `gorm:"serializer:json;type:jsonb"`
	Label string
}

func interfaceShape() suiteShape {
	return &shape[Iface, int64]{
		name: "Interfaces",
		rows: func() []Iface {
			return []Iface{
				{Label: "nil"},
				{A: 42, B: "str", Label: "scalars"},
				{A: true, B: []any{}, Label: "bool, empty array"},
				{A: map[string]any{"k": []any{1.5, nil, "ü"}}, B: 1.5, Label: "object"},
				{A: []any{nil, map[string]any{}}, B: false, Label: "array"},
				{A: "ünï{}:%", B: 12345678, Label: "string, integer"},
			}
		},
		missing: 424242,
		change:  func(v *Iface) string { v.Label += "·changed"; return "label" },
	}
}

// --- a row larger than L1MaxEntryBytes ---------------------------------------

type Big struct {
	ID    int64
	Label string `gorm:"uniqueIndex"`
	Body  string `gorm:"type:text"`
}

func bigShape() suiteShape {
	return &shape[Big, int64]{
		name: "BigRow",
		rows: func() []Big {
			var b strings.Builder
			for i := 0; b.Len() < 100<<10; i++ {
				fmt.Fprintf(&b, "line %d: ünï {}:%% 🙂\n", i)
			}
			return []Big{{Label: "small", Body: "tiny"}, {Label: "100 KB", Body: b.String()}, {Label: "empty"}}
		},
		big:     []int{1},
		missing: 424242,
		unique:  "label",
		change:  func(v *Big) string { v.Label += "·changed"; return "label" },
	}
}
