// Command decorator caches an existing GORM repository without changing its
// interface or its callers: the read methods are wrapped with
// repository.Wrap, and the write method invalidates what it changed after it
// commits.
//
//	go run ./example/decorator                      # embedded Redis and SQLite
//	go run ./example/decorator -redis ADDR -dsn DSN # real Redis and PostgreSQL
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/example/internal/demoenv"
	"github.com/gormcache/gormcache/repository"
)

// ---- The application as it was: a model, a repository interface, its GORM
// implementation, and a service that uses the interface. None of it changes.

// User is the application's model.
type User struct {
	ID    uint   `gorm:"primaryKey"`
	Email string `gorm:"uniqueIndex;size:128"`
	Name  string
}

// TableName keeps the demo's table apart from anything of yours.
func (User) TableName() string { return "gormcache_decorator_users" }

// UserRepository is the interface the application's code depends on.
type UserRepository interface {
	FindByID(ctx context.Context, id uint) (*User, error)
	FindByEmail(ctx context.Context, email string) (*User, error)
	Save(ctx context.Context, u *User) error
}

type gormUsers struct{ db *gorm.DB }

func (r gormUsers) FindByID(ctx context.Context, id uint) (*User, error) {
	var u User
	if err := r.db.WithContext(ctx).Take(&u, id).Error; err != nil {
		return nil, err
	}
	return &u, nil
}

func (r gormUsers) FindByEmail(ctx context.Context, email string) (*User, error) {
	var u User
	if err := r.db.WithContext(ctx).Where("email = ?", email).Take(&u).Error; err != nil {
		return nil, err
	}
	return &u, nil
}

func (r gormUsers) Save(ctx context.Context, u *User) error {
	return r.db.WithContext(ctx).Save(u).Error
}

// ProfileService is a caller; it only knows UserRepository.
type ProfileService struct{ Users UserRepository }

// Greeting looks a user up by email.
func (s ProfileService) Greeting(ctx context.Context, email string) (string, error) {
	u, err := s.Users.FindByEmail(ctx, email)
	if errors.Is(err, gorm.ErrRecordNotFound) { // the caller's existing check keeps working
		return "no such user", nil
	}
	if err != nil {
		return "", err
	}
	return "hello, " + u.Name, nil
}

// ---- The decorator: the same interface, cached.

type cachedUsers struct {
	UserRepository // the original, for writes and anything not cached
	byID           *repository.Cached[uint, *User]
	byEmail        *repository.Cached[string, *User]
}

// NewCachedUsers wraps any UserRepository with c.
func NewCachedUsers(inner UserRepository, c *cache.Cache) (UserRepository, error) {
	byID, err := repository.Wrap(c, "users-by-id", inner.FindByID, repository.WrapOptions[*User]{})
	if err != nil {
		return nil, err
	}
	byEmail, err := repository.Wrap(c, "users-by-email", inner.FindByEmail, repository.WrapOptions[*User]{})
	if err != nil {
		return nil, err
	}
	return &cachedUsers{UserRepository: inner, byID: byID, byEmail: byEmail}, nil
}

func (r *cachedUsers) FindByID(ctx context.Context, id uint) (*User, error) {
	return r.byID.Get(ctx, id)
}

func (r *cachedUsers) FindByEmail(ctx context.Context, email string) (*User, error) {
	return r.byEmail.Get(ctx, email)
}

// Save writes through the original and, once it has committed, retires
// every cached answer it may have changed: the id, the new email, and the
// old email if it changed.
func (r *cachedUsers) Save(ctx context.Context, u *User) error {
	var oldEmail string
	if u.ID != 0 {
		if old, err := r.UserRepository.FindByID(ctx, u.ID); err == nil {
			oldEmail = old.Email
		}
	}
	if err := r.UserRepository.Save(ctx, u); err != nil {
		return err
	}
	errs := []error{r.byID.Invalidate(ctx, u.ID), r.byEmail.Invalidate(ctx, u.Email)}
	if oldEmail != "" && oldEmail != u.Email {
		errs = append(errs, r.byEmail.Invalidate(ctx, oldEmail))
	}
	return errors.Join(errs...)
}

func main() {
	redisAddr, dsn := demoenv.Flags()
	flag.Parse()
	if err := run(*redisAddr, *dsn); err != nil {
		fmt.Fprintln(os.Stderr, "decorator:", err)
		os.Exit(1)
	}
}

func run(redisAddr, dsn string) error {
	ctx := context.Background()
	env, err := demoenv.Open(redisAddr, dsn)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Println("using", env.Describe())
	db := env.DB
	db.Migrator().DropTable(&User{})
	if err := db.AutoMigrate(&User{}); err != nil {
		return err
	}
	defer db.Migrator().DropTable(&User{})

	var tag [4]byte
	rand.Read(tag[:])
	// SingleInstance: this process is the only one on its (random)
	// namespace; several processes would attach an invalidation bus.
	c, err := cache.New(ctx, cache.Options{Redis: env.Redis, Namespace: "decorator-" + hex.EncodeToString(tag[:]), SingleInstance: true})
	if err != nil {
		return err
	}
	defer c.Close()

	// Count the queries the database really runs.
	var queries int
	db.Callback().Query().After("gorm:query").Register("demo:count", func(*gorm.DB) { queries++ })

	users, err := NewCachedUsers(gormUsers{db}, c)
	if err != nil {
		return err
	}
	svc := ProfileService{Users: users} // the only line that changed in the application

	if err := users.Save(ctx, &User{Email: "ada@example.com", Name: "Ada"}); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		g, err := svc.Greeting(ctx, "ada@example.com")
		if err != nil {
			return err
		}
		fmt.Printf("greeting %d: %-22s (database queries so far: %d)\n", i+1, g, queries)
	}
	u, err := users.FindByEmail(ctx, "ada@example.com")
	if err != nil {
		return err
	}
	u.Name, u.Email = "Ada Lovelace", "lovelace@example.com"
	if err := users.Save(ctx, u); err != nil {
		return err
	}
	fmt.Println("saved: name and email changed")
	for _, email := range []string{"ada@example.com", "lovelace@example.com"} {
		g, err := svc.Greeting(ctx, email)
		if err != nil {
			return err
		}
		fmt.Printf("greeting %-21s %s\n", email+":", g)
	}
	s := c.Stats()
	fmt.Printf("stats: L1 hits %d, misses %d, invalidations %d\n", s.L1Hits, s.Misses, s.Invalidations)
	return nil
}
