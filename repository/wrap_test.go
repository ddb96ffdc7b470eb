package repository

import (
	"context"
	"errors"
	"testing"

	"gorm.io/gorm"
)

// accountStore is an existing repository the application already has.
type accountStore struct{ db *gorm.DB }

func (s accountStore) FindByEmail(ctx context.Context, email string) (*account, error) {
	var a account
	if err := s.db.WithContext(ctx).Where("email = ?", email).Take(&a).Error; err != nil {
		return nil, err
	}
	return &a, nil
}

func TestWrapExistingMethod(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	store := accountStore{e.db}
	byEmail, err := Wrap(e.c, "account-by-email", store.FindByEmail, WrapOptions[*account]{
		Version: func(a *account) uint64 { return uint64(a.Version) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = byEmail.Get(ctx, "ada@x")
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Fatalf("absent: %v", err)
	}
	e.db.Create(&account{ID: 1, Email: "ada@x", Name: "Ada", Version: 1})
	if err := byEmail.InvalidateVersion(ctx, "ada@x", 1); err != nil {
		t.Fatal(err)
	}
	q := e.queries.Load()
	for i := 0; i < 3; i++ {
		a, err := byEmail.Get(ctx, "ada@x")
		if err != nil || a.Name != "Ada" {
			t.Fatalf("Get: %v %+v", err, a)
		}
		a.Name = "mutated" // the caller's own copy
	}
	if e.queries.Load()-q != 1 {
		t.Fatalf("%d queries for 3 reads", e.queries.Load()-q)
	}
	e.db.Model(&account{ID: 1}).Updates(map[string]any{"name": "Ada L.", "version": 2})
	byEmail.InvalidateVersion(ctx, "ada@x", 2)
	q = e.queries.Load()
	for i := 0; i < 3; i++ {
		if a, _ := byEmail.Get(ctx, "ada@x"); a.Name != "Ada L." {
			t.Fatalf("after invalidate: %+v", a)
		}
	}
	if e.queries.Load()-q != 1 {
		t.Fatalf("%d queries for 3 reads after the write", e.queries.Load()-q)
	}
	if _, err := byEmail.Get(ctx, ""); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("zero key: %v", err)
	}
	if _, err := Wrap[string, *account](e.c, "", store.FindByEmail, WrapOptions[*account]{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty namespace: %v", err)
	}
	if _, err := Wrap[string, *account](e.c, "x", nil, WrapOptions[*account]{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil fn: %v", err)
	}
}
