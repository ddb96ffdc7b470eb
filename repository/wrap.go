package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
)

// WrapOptions configures Wrap. The zero value means defaults.
type WrapOptions[V any] struct {
	// Version returns the version of a loaded value (its row's Version
	// column), making the cached entries versioned. Nil means unversioned:
	// invalidations are stamped (see the package documentation).
	Version func(V) uint64
	// IsNotFound reports whether an error of the wrapped method means "no
	// such record", which is then cached for the cache's NotFoundTTL.
	// Default: errors.Is with gorm.ErrRecordNotFound, sql.ErrNoRows or
	// ErrNotFound.
	IsNotFound func(error) bool
	// TTL is the Redis lifetime of cached values. Default: the cache's L2TTL.
	TTL time.Duration
	// SkipL1 serves these values from Redis only.
	SkipL1 bool
}

// Cached is one read method of an existing repository, wrapped with the
// cache: same signature, cached results, explicit invalidation.
type Cached[K comparable, V any] struct {
	c       *cache.Cache
	ns      string
	fn      func(context.Context, K) (V, error)
	opts    WrapOptions[V]
	readOpt []cache.ReadOption
}

// Wrap decorates fn, any read method of the form func(ctx, K) (V, error),
// with the cache. namespace names its keys ("<namespace>:<k>") and must be
// unique per method. Callers keep calling a method of the same signature:
//
//	byEmail, err := repository.Wrap(c, "user-by-email", users.FindByEmail, repository.WrapOptions[*User]{})
//	u, err := byEmail.Get(ctx, "ada@example.com")
//
// After a write that changes what fn would return for k commits, call
// Invalidate(ctx, k) (or InvalidateVersion).
func Wrap[K comparable, V any](c *cache.Cache, namespace string, fn func(context.Context, K) (V, error), opts WrapOptions[V]) (*Cached[K, V], error) {
	if c == nil || fn == nil {
		return nil, fmt.Errorf("%w: nil cache or function", ErrInvalidArgument)
	}
	if namespace == "" || strings.ContainsAny(namespace, "{}") {
		return nil, fmt.Errorf("%w: namespace %q is empty or contains '{' or '}'", ErrInvalidArgument, namespace)
	}
	if opts.IsNotFound == nil {
		opts.IsNotFound = func(err error) bool {
			return errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, sql.ErrNoRows) || errors.Is(err, ErrNotFound)
		}
	}
	if err := cache.CheckType[V](c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedModel, err)
	}
	w := &Cached[K, V]{c: c, ns: namespace, fn: fn, opts: opts}
	if opts.TTL > 0 {
		w.readOpt = append(w.readOpt, cache.WithTTL(opts.TTL))
	}
	if opts.SkipL1 {
		w.readOpt = append(w.readOpt, cache.SkipL1())
	}
	return w, nil
}

// checkZero refuses the zero key.
func checkZero[K comparable](k K) error {
	var zero K
	if k == zero {
		return fmt.Errorf("%w: zero %T", ErrInvalidID, k)
	}
	return nil
}

// Key returns the cache key of k.
func (w *Cached[K, V]) Key(k K) string { return w.ns + ":" + formatKey(k) }

// Get returns what the wrapped method returns for k, from the cache when
// possible. A not-found result is returned as an error for which
// errors.Is(err, ErrNotFound) and errors.Is(err, gorm.ErrRecordNotFound) hold.
func (w *Cached[K, V]) Get(ctx context.Context, k K) (V, error) {
	if err := checkZero(k); err != nil {
		var zero V
		return zero, err
	}
	v, err := cache.Get(ctx, w.c, w.Key(k), func(ctx context.Context, _ string) (V, uint64, error) {
		v, err := w.fn(ctx, k)
		if err != nil {
			if w.opts.IsNotFound(err) {
				err = cache.ErrNotFound
			}
			return v, 0, err
		}
		var ver uint64
		if w.opts.Version != nil {
			ver = w.opts.Version(v)
		}
		return v, ver, nil
	}, w.readOpt...)
	if errors.Is(err, cache.ErrNotFound) {
		return v, fmt.Errorf("%w: %s %v", ErrNotFound, w.ns, k)
	}
	return v, err
}

// Invalidate retires the cached value of k. Call it after the write that
// changed it commits.
func (w *Cached[K, V]) Invalidate(ctx context.Context, k K) error {
	return w.InvalidateVersion(ctx, k, 0)
}

// InvalidateVersion retires the cached value of k, recording that the write
// committed at version (0: stamp a generation, as for unversioned values).
func (w *Cached[K, V]) InvalidateVersion(ctx context.Context, k K, version uint64) error {
	if err := checkZero(k); err != nil {
		return err
	}
	return w.c.Invalidate(ctx, w.Key(k), version)
}
