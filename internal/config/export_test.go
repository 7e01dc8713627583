package config

// What the external tests (package config_test, which registers the real vendors through
// sources/all) need of the internals.

// DecodeConfig is decodeConfig: the file decoded, not validated, without defaults.
var DecodeConfig = decodeConfig

// WithDefaultsFrom is WithDefaults with the environment read from getenv.
func (c *Config) WithDefaultsFrom(getenv func(string) string) *Config { return c.withDefaults(getenv) }

// SetField is setField.
func (s *Secret) SetField(path string, line int) { s.setField(path, line) }

// ResolveFrom is Resolve with the environment read from getenv.
func (s Secret) ResolveFrom(getenv func(string) string) (string, error) { return s.resolve(getenv) }
