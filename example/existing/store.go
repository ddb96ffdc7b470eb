package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// The store, as the service had it before it was cached: plain GORM, no
// knowledge of gormcache. Nothing in this file changed when the cache was
// added (see cached.go).

// User belongs to an organisation; deactivated or deleted users cannot
// authenticate.
type User struct {
	ID        int64          `gorm:"primaryKey" json:"id"`
	OrgID     int64          `gorm:"index" json:"org_id"`
	Name      string         `gorm:"size:200" json:"name"`
	Active    bool           `json:"active"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	DeletedAt gorm.DeletedAt `gorm:"index" json:"-"`
}

// Token is an API token. Users present "<id>.<secret>"; only the secret's
// hash is stored.
type Token struct {
	ID         int64      `gorm:"primaryKey" json:"id"`
	UserID     int64      `gorm:"index" json:"user_id"`
	Label      string     `gorm:"size:100" json:"label"`
	SecretHash string     `gorm:"size:64" json:"-"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
}

// TableName keeps the example's tables apart from anything of yours.
func (User) TableName() string { return "existing_users" }

// TableName keeps the example's tables apart from anything of yours.
func (Token) TableName() string { return "existing_tokens" }

var (
	ErrNotFound     = errors.New("not found")
	ErrUnauthorized = errors.New("unauthorized")
	ErrRevoked      = errors.New("token already revoked")
	ErrLabelTaken   = errors.New("label already used by a live token of this user")
)

// Store is the service's data access.
type Store struct{ db *gorm.DB }

func notFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	return err
}

// CreateUser inserts an active user.
func (s *Store) CreateUser(ctx context.Context, orgID int64, name string) (*User, error) {
	u := User{OrgID: orgID, Name: name, Active: true}
	if err := s.db.WithContext(ctx).Create(&u).Error; err != nil {
		return nil, err
	}
	return &u, nil
}

// User reads a user by primary key.
func (s *Store) User(ctx context.Context, id int64) (*User, error) {
	var u User
	if err := s.db.WithContext(ctx).First(&u, id).Error; err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

// RenameUser changes a user's name (Updates with a struct: non-zero fields).
func (s *Store) RenameUser(ctx context.Context, id int64, name string) error {
	res := s.db.WithContext(ctx).Model(&User{ID: id}).Updates(User{Name: name})
	if res.Error == nil && res.RowsAffected == 0 {
		return ErrNotFound
	}
	return res.Error
}

// DeactivateOrg deactivates every user of an organisation in one UPDATE and
// returns how many it changed.
func (s *Store) DeactivateOrg(ctx context.Context, orgID int64) (int64, error) {
	res := s.db.WithContext(ctx).Model(&User{}).Where("org_id = ?", orgID).Update("active", false)
	return res.RowsAffected, res.Error
}

// DeleteUser soft-deletes a user; their tokens stop authenticating with them.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	res := s.db.WithContext(ctx).Delete(&User{}, id)
	if res.Error == nil && res.RowsAffected == 0 {
		return ErrNotFound
	}
	return res.Error
}

func newSecret() (secret, hash string) {
	var b [24]byte
	rand.Read(b[:])
	secret = hex.EncodeToString(b[:])
	return secret, hashSecret(secret)
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// labelTaken reports whether the user has a live token with the label
// other than except. Labels are unique among a user's live tokens, a rule
// the schema does not hold (revoked tokens keep theirs).
func labelTaken(tx *gorm.DB, userID int64, label string, except int64) (bool, error) {
	var n int64
	err := tx.Model(&Token{}).Where("user_id = ? AND label = ? AND revoked_at IS NULL AND id <> ?", userID, label, except).Count(&n).Error
	return n > 0, err
}

// IssueToken creates a token for a user and returns it with the string to
// present, shown only this once.
func (s *Store) IssueToken(ctx context.Context, userID int64, label string) (*Token, string, error) {
	db := s.db.WithContext(ctx)
	if _, err := s.User(ctx, userID); err != nil {
		return nil, "", err
	}
	taken, err := labelTaken(db, userID, label, 0)
	if err != nil {
		return nil, "", err
	}
	if taken {
		return nil, "", ErrLabelTaken
	}
	secret, hash := newSecret()
	t := Token{UserID: userID, Label: label, SecretHash: hash}
	if err := db.Create(&t).Error; err != nil {
		return nil, "", err
	}
	return &t, fmt.Sprintf("%d.%s", t.ID, secret), nil
}

// Tokens lists a user's tokens, revoked ones included.
//
// A per-user list: with the plugin, served by its query cache (the list of
// ids under the table's generation, the rows from the row cache), unchanged.
func (s *Store) Tokens(ctx context.Context, userID int64) ([]Token, error) {
	var ts []Token
	err := s.db.WithContext(ctx).Where("user_id = ?", userID).Order("id").Find(&ts).Error
	return ts, err
}

// RevokeToken revokes a token: read, modify, Save.
func (s *Store) RevokeToken(ctx context.Context, id int64) error {
	db := s.db.WithContext(ctx)
	var t Token
	if err := db.First(&t, id).Error; err != nil {
		return notFound(err)
	}
	if t.RevokedAt != nil {
		return ErrRevoked
	}
	now := time.Now()
	t.RevokedAt = &now
	return db.Save(&t).Error
}

// RotateToken revokes a token and issues its replacement in one
// transaction. A new label, if given, is applied under a savepoint and
// undone if a live token of the user already has it: the rotation still
// commits, under the old label.
func (s *Store) RotateToken(ctx context.Context, id int64, label string) (next *Token, token string, err error) {
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var old Token
		if err := tx.First(&old, id).Error; err != nil {
			return notFound(err)
		}
		if old.RevokedAt != nil {
			return ErrRevoked
		}
		if err := tx.Model(&old).Update("revoked_at", time.Now()).Error; err != nil {
			return err
		}
		secret, hash := newSecret()
		next = &Token{UserID: old.UserID, Label: old.Label, SecretHash: hash}
		if err := tx.Create(next).Error; err != nil {
			return err
		}
		token = fmt.Sprintf("%d.%s", next.ID, secret)
		if label == "" || label == old.Label {
			return nil
		}
		if err := tx.SavePoint("relabel").Error; err != nil {
			return err
		}
		if err := tx.Model(next).Update("label", label).Error; err != nil {
			return err
		}
		taken, err := labelTaken(tx, next.UserID, label, next.ID)
		if err != nil {
			return err
		}
		if taken {
			next.Label = old.Label
			return tx.RollbackTo("relabel").Error
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return next, token, nil
}

// Authenticate returns the user a presented token belongs to, and the token.
//
// The token names its row ("<id>.<secret>", the id being the primary key),
// so both reads here are primary-key reads, which the cache serves. A
// service that looks tokens up by a unique column instead
// (Where("secret_hash = ?", h).First(&t)) works unchanged with the plugin:
// the query cache serves it.
func (s *Store) Authenticate(ctx context.Context, presented string) (*User, *Token, error) {
	idPart, secret, ok := strings.Cut(presented, ".")
	id, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil {
		return nil, nil, ErrUnauthorized
	}
	db := s.db.WithContext(ctx)
	var t Token
	if err := db.First(&t, id).Error; err != nil {
		return nil, nil, unauthorized(err)
	}
	if subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hashSecret(secret))) != 1 || t.RevokedAt != nil {
		return nil, nil, ErrUnauthorized
	}
	var u User
	if err := db.First(&u, t.UserID).Error; err != nil {
		return nil, nil, unauthorized(err)
	}
	if !u.Active {
		return nil, nil, ErrUnauthorized
	}
	return &u, &t, nil
}

func unauthorized(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrUnauthorized
	}
	return err
}
