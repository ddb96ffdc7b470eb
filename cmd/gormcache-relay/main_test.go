package main

import (
	"reflect"
	"testing"

	"github.com/gormcache/gormcache/changefeed"
)

func TestParseTable(t *testing.T) {
	for spec, want := range map[string]changefeed.Table{
		"users":              {Name: "users"},
		"users::email":       {Name: "users", Uniques: []string{"email"}},
		"docs:version":       {Name: "docs", Version: "version"},
		"app.docs=d:ver:a,b": {Name: "app.docs", Namespace: "d", Version: "ver", Uniques: []string{"a", "b"}},
		"users=accounts:":    {Name: "users", Namespace: "accounts"},
	} {
		got, err := parseTable(spec)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseTable(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", ":v", "=ns", "a:b:c:d"} {
		if _, err := parseTable(bad); err == nil {
			t.Errorf("parseTable(%q) accepted", bad)
		}
	}
}
