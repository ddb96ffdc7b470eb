package gormcache

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// lyingPool is a pool whose transactions commit but report that COMMIT
// failed, as when its reply is lost: the outcome is unknown to the caller.
type lyingPool struct{ *sql.DB }

func (p lyingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return lyingTx{tx}, nil
}

type lyingTx struct{ *sql.Tx }

var errLostReply = errors.New("connection reset while COMMIT's reply was in flight")

func (t lyingTx) Commit() error {
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	return errLostReply
}

// TestCommitErrorStillInvalidates: a COMMIT that returns an error may have
// committed; the plugin invalidates anyway, so the other instance never
// serves the old row for a write that in fact committed.
func TestCommitErrorStillInvalidates(t *testing.T) {
	f := newFleet(t, 2, nil)
	f.seed(t, user{ID: 1, Token: "t1", Name: "old"})
	f.warm(t, 1)
	sqlDB, err := f.in[0].db.DB()
	if err != nil {
		t.Fatal(err)
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: lyingPool{sqlDB}}), &gorm.Config{
		NamingStrategy: f.in[0].db.NamingStrategy, Logger: f.in[0].db.Logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Use(&Plugin{Cache: f.in[0].c}); err != nil {
		t.Fatal(err)
	}
	err = db.Transaction(func(tx *gorm.DB) error { return tx.Model(&user{ID: 1}).Update("name", "new").Error })
	if !errors.Is(err, errLostReply) {
		t.Fatalf("Transaction: %v, want the lost reply", err)
	}
	if u := f.truth(t, 1); u.Name != "new" {
		t.Fatalf("the write did not commit: %+v", u)
	}
	f.check(t, 1)
}
