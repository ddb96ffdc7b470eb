package repository

// Version is the optimistic-locking column. Add it to a model, embedded or
// as a named field:
//
//	type User struct {
//		ID    uint
//		Email string `gorm:"uniqueIndex"`
//		repository.Version
//	}
//
// The repository then creates rows at version 1, and every Update, Updates
// and Delete runs "... WHERE pk = ? AND version = ?" while setting version to
// version+1; zero rows matched is ErrConflict. Cached entries carry this
// version, so the cache can reject any fill older than the last committed
// write.
type Version uint64
