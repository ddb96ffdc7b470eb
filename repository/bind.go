package repository

import (
	"context"
	"errors"
	"reflect"
)

// readAny serves the plugin's transparent reads (db.First(&u, id) through
// the cache): the rows of ids, which may be of any integer type for an
// integer key, or of the key's type.
func (r *Repository[T, ID]) readAny(ctx context.Context, ids []any) ([]reflect.Value, bool, error) {
	idt := reflect.TypeFor[ID]()
	typed := make([]ID, 0, len(ids))
	seen := make(map[ID]bool, len(ids))
	for _, v := range ids {
		rv := reflect.ValueOf(v)
		if !rv.IsValid() || !convertible(rv.Type(), idt) {
			return nil, false, nil
		}
		id := rv.Convert(idt).Interface().(ID)
		if r.checkID(id) != nil || seen[id] || !sameValue(rv, id) {
			if seen[id] {
				continue
			}
			return nil, false, nil
		}
		seen[id] = true
		typed = append(typed, id)
	}
	if len(typed) == 1 { // Get joins concurrent loads of the key; GetMany does not
		v, err := r.Get(ctx, typed[0])
		if errors.Is(err, ErrNotFound) {
			return nil, true, nil
		}
		if err != nil {
			return nil, true, err
		}
		return []reflect.Value{reflect.ValueOf(v)}, true, nil
	}
	rows, err := r.GetMany(ctx, typed)
	var miss *MissingError[ID]
	if err != nil && !errors.As(err, &miss) {
		return nil, true, err
	}
	out := make([]reflect.Value, 0, len(rows))
	for _, v := range rows {
		if v != nil {
			out = append(out, reflect.ValueOf(v))
		}
	}
	return out, true, nil
}

// convertible: the same type, or integers to an integer key.
func convertible(from, to reflect.Type) bool {
	if from == to {
		return true
	}
	isInt := func(t reflect.Type) bool {
		k := t.Kind()
		return k >= reflect.Int && k <= reflect.Uint64
	}
	return isInt(from) && isInt(to)
}

// sameValue reports that converting rv to the key's type kept its value (a
// negative int is not a uint key, a large uint64 not an int32).
func sameValue[ID any](rv reflect.Value, id ID) bool {
	back := reflect.ValueOf(id).Convert(rv.Type())
	return back.Equal(rv)
}
