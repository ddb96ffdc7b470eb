package gormcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/repository"
)

// membership has a composite primary key.
type membership struct {
	OrgID  int64 `gorm:"primaryKey;autoIncrement:false"`
	UserID int64 `gorm:"primaryKey;autoIncrement:false"`
	Role   string
	repository.Version
}

type membershipKey struct{ OrgID, UserID int64 }

// TestCompositeKeyAcrossInstances: rows with a composite primary key stay
// coherent between instances, for writes through the repository and
// through plain GORM (the plugin), updates and deletes alike.
func TestCompositeKeyAcrossInstances(t *testing.T) {
	f := newFleet(t, 2, nil)
	if err := f.base.AutoMigrate(&membership{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	repos := make([]*repository.Repository[membership, membershipKey], len(f.in))
	for i, in := range f.in {
		r, err := repository.New[membership, membershipKey](in.db, in.c, repository.Options{})
		if err != nil {
			t.Fatal(err)
		}
		repos[i] = r
	}
	key := membershipKey{OrgID: 7, UserID: 3}
	m := &membership{OrgID: key.OrgID, UserID: key.UserID, Role: "member"}
	if err := repos[1].Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	role := func() string { // instance 0's view, read twice so that L1 serves it
		repos[0].Get(ctx, key)
		got, err := repos[0].Get(ctx, key)
		if errors.Is(err, repository.ErrNotFound) {
			return "<deleted>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return got.Role
	}
	seen := func(want string) {
		t.Helper()
		testenv.WaitFor(2*time.Second, func() bool { return role() == want })
		if got := role(); got != want {
			t.Fatalf("instance 0 reads role %q, want %q", got, want)
		}
	}
	seen("member")

	m.Role = "admin" // through instance 1's repository
	if err := repos[1].Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	seen("admin")

	// Plain GORM on instance 1, by model (optimistic locking) and by key.
	if err := f.in[1].db.Model(m).Update("role", "owner").Error; err != nil {
		t.Fatal(err)
	}
	seen("owner")
	if err := f.in[1].db.Model(&membership{}).Where("org_id = ? AND user_id = ?", key.OrgID, key.UserID).Update("role", "guest").Error; err != nil {
		t.Fatal(err)
	}
	seen("guest")
	if err := f.in[1].db.Where("org_id = ? AND user_id = ?", key.OrgID, key.UserID).Delete(&membership{}).Error; err != nil {
		t.Fatal(err)
	}
	seen("<deleted>")
}
