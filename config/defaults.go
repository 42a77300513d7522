package config

// Defaults returns a T (a configuration section) with every default
// applied, as loading `{}` would (required fields stay zero).
func Defaults[T any]() T {
	var v T
	decodeInto(&node{kind: kindObject, line: 1}, &v, &collector{})
	return v
}
