package config

// withDefaults returns a T with every default applied, as loading `{}` would
// (required fields stay zero).
func withDefaults[T any]() T {
	var v T
	decodeInto(&node{kind: kindObject, line: 1}, &v, &collector{})
	return v
}
