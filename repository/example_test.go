package repository_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/glebarez/sqlite"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/repository"
)

type User struct {
	ID    uint   `gorm:"primaryKey"`
	Email string `gorm:"uniqueIndex"`
	Name  string
	repository.Version
}

// open gives the examples an embedded Redis and SQLite; use real ones in
// production.
func open() (*gorm.DB, *cache.Cache, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	db, _ := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{Logger: logger.Discard})
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1)
	db.AutoMigrate(&User{})
	c, _ := cache.New(context.Background(), cache.Options{Redis: rdb})
	return db, c, func() { c.Close(); rdb.Close(); sqlDB.Close(); mr.Close() }
}

func Example() {
	db, c, done := open()
	defer done()
	ctx := context.Background()

	users, _ := repository.New[User, uint](db, c, repository.Options{})
	u := &User{Email: "ada@example.com", Name: "Ada"}
	users.Create(ctx, u)

	got, _ := users.Get(ctx, u.ID) // one SELECT, then cached
	fmt.Println(got.Name, got.Version)

	got.Name = "Ada Lovelace"
	users.Update(ctx, got) // UPDATE ... WHERE id = ? AND version = 1, then invalidate
	stale := &User{ID: u.ID, Email: u.Email, Name: "Countess", Version: 1}
	err := users.Update(ctx, stale)
	fmt.Println(errors.Is(err, repository.ErrConflict))

	byEmail, _ := users.GetBy(ctx, "email", "ada@example.com")
	fmt.Println(byEmail.Name, byEmail.Version)
	// Output:
	// Ada 1
	// true
	// Ada Lovelace 2
}

func ExampleTransaction() {
	db, c, done := open()
	defer done()
	ctx := context.Background()
	users, _ := repository.New[User, uint](db, c, repository.Options{})
	users.Create(ctx, &User{ID: 1, Email: "a@example.com", Name: "A"})
	users.Create(ctx, &User{ID: 2, Email: "b@example.com", Name: "B"})

	// Both writes are invalidated together, after COMMIT; a rollback would
	// invalidate nothing.
	err := repository.Transaction(ctx, db, func(tx *repository.Tx) error {
		tu := users.WithTx(tx)
		for _, id := range []uint{1, 2} {
			u, err := tu.Get(ctx, id) // reads the transaction, never the cache
			if err != nil {
				return err
			}
			u.Name += "!"
			if err := tu.Update(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	fmt.Println(err)
	all, _ := users.GetMany(ctx, []uint{2, 1})
	fmt.Println(all[0].Name, all[1].Name)
	// Output:
	// <nil>
	// B! A!
}

func ExampleWrap() {
	db, c, done := open()
	defer done()
	ctx := context.Background()
	db.Create(&User{ID: 1, Email: "ada@example.com", Name: "Ada"})

	// An existing method, unchanged.
	findByEmail := func(ctx context.Context, email string) (*User, error) {
		var u User
		err := db.WithContext(ctx).Where("email = ?", email).Take(&u).Error
		return &u, err
	}
	cached, _ := repository.Wrap(c, "user-by-email", findByEmail, repository.WrapOptions[*User]{})
	u, _ := cached.Get(ctx, "ada@example.com")
	fmt.Println(u.Name)
	_, err := cached.Get(ctx, "nobody@example.com")
	fmt.Println(errors.Is(err, gorm.ErrRecordNotFound))
	// Output:
	// Ada
	// true
}

// Membership has a composite primary key; its ID type is a struct with one
// field per key field.
type Membership struct {
	OrgID  uint `gorm:"primaryKey;autoIncrement:false"`
	UserID uint `gorm:"primaryKey;autoIncrement:false"`
	Role   string
	repository.Version
}

type MembershipKey struct{ OrgID, UserID uint }

func ExampleNew_compositeKey() {
	db, c, done := open()
	defer done()
	ctx := context.Background()
	db.AutoMigrate(&Membership{})

	members, err := repository.New[Membership, MembershipKey](db, c, repository.Options{})
	if err != nil {
		panic(err)
	}
	members.Create(ctx, &Membership{OrgID: 1, UserID: 7, Role: "admin"})
	m, _ := members.Get(ctx, MembershipKey{OrgID: 1, UserID: 7})
	fmt.Println(m.Role)
	_, err = members.Get(ctx, MembershipKey{OrgID: 1}) // every key part must be set
	fmt.Println(errors.Is(err, repository.ErrInvalidID))
	// Output:
	// admin
	// true
}
