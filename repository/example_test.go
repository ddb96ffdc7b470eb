package repository_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/repository"
)

type User struct {
	ID    uint   `gorm:"primaryKey"`
	Email string `gorm:"uniqueIndex"`
	Name  string
	repository.Version
}

// open connects the examples to the Redis and PostgreSQL of `make test`
// (GORMCACHE_REDIS_ADDR and GORMCACHE_PG_DSN; TestMain skips the examples
// when they are unset), with tables and keys of their own that done removes.
// A program passes its own addresses.
func open() (db *gorm.DB, c *cache.Cache, done func()) {
	var b [4]byte
	rand.Read(b[:])
	name := "ex_" + hex.EncodeToString(b[:])
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(testenv.EnvRedis), ContextTimeoutEnabled: true})
	db, err := gorm.Open(postgres.Open(os.Getenv(testenv.EnvPostgres)), &gorm.Config{
		Logger:         logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: name + "_"},
	})
	if err != nil {
		panic(err)
	}
	sqlDB, _ := db.DB()
	if err := db.AutoMigrate(&User{}); err != nil {
		panic(err)
	}
	c, err = cache.New(context.Background(), cache.Options{Redis: rdb, Namespace: name})
	if err != nil {
		panic(err)
	}
	return db, c, func() {
		c.Close()
		var tables []string
		db.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, ?)`, name+"_").Scan(&tables)
		for _, t := range tables {
			db.Exec(`DROP TABLE IF EXISTS "` + t + `" CASCADE`)
		}
		testenv.DeletePrefix(rdb, name+":")
		rdb.Close()
		sqlDB.Close()
	}
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
