package rowcodec

import (
	_ "database/sql" // convertAssign lives there
	_ "unsafe"       // go:linkname
)

// convertAssign is database/sql's conversion of a driver value into a scan
// destination, the function sql.Rows.Scan calls for every column. Using it
// (rather than a copy) is what makes the generic path GORM's own: database/sql
// keeps this symbol linkable on purpose (go.dev/issue/67401).
//
//go:linkname convertAssign database/sql.convertAssign
func convertAssign(dest, src any) error
