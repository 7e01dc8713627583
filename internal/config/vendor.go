package config

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options are one vendor's connection options: a pointer to a struct whose yaml-tagged
// fields are the vendor's own keys on a connection, written flat next to the common keys
// (name, source, client_id, ...) and decoded by the same strict rules as the rest of the
// file. A vendor package declares them and registers them with internal/vendors, which
// hands them to RegisterVendor; this package names no vendor.
type Options interface {
	// Defaults fills the zero values with the vendor's defaults. Each default lives there,
	// and only there.
	Defaults()
	// Validate reports what a user got wrong through c, whose keys are relative to the
	// connection ("app_id", "scopes[1]"); the errors name the full key path and its line.
	// Zero values are valid (they mean the defaults), so it works before and after Defaults.
	Validate(c *Checker)
}

// Checker reports the problems of one connection's options. Its methods take keys relative
// to the connection.
type Checker struct {
	v      *validator
	prefix string // "connections[2]"
}

func (c *Checker) path(key string) string { return c.prefix + "." + key }

// Fail reports a problem with key.
func (c *Checker) Fail(key, format string, args ...any) { c.v.fail(c.path(key), format, args...) }

// Count checks that 0 <= n <= max (0 means the default).
func (c *Checker) Count(key string, n, max int) { c.v.count(c.path(key), n, max) }

// OneOf checks that value is empty (the default) or one of allowed.
func (c *Checker) OneOf(key, value string, allowed ...string) {
	c.v.oneOf(c.path(key), value, allowed...)
}

// Within checks that 0 <= d <= max.
func (c *Checker) Within(key string, d Duration, max time.Duration) {
	if d < 0 || d.D() > max {
		c.Fail(key, "must be between 0s and %s, got %s", max, d)
	}
}

// Secret checks a secret reference (exactly one of file, env, credential).
func (c *Checker) Secret(key string, s Secret, required bool) { c.v.secret(c.path(key), s, required) }

// URL checks an https URL (plain http only on loopback).
func (c *Checker) URL(key, raw string) { c.v.url(c.path(key), raw) }

// PasswordGrantOptions are the options of a vendor with a password grant (LocaliQ "direct
// access"): the username and the password's reference, when both are configured.
type PasswordGrantOptions interface {
	PasswordGrant() (username string, password Secret, ok bool)
}

// StaticAuthOptions are the options of a vendor that can authenticate with static tokens
// (HighLevel Private Integration Tokens, LACRM API keys) instead of an OAuth app. When
// StaticAuth reports true, the connection needs no client_id or client_secret and no
// `leadsync auth login`: its tokens are secrets in the configuration.
type StaticAuthOptions interface {
	StaticAuth() bool
}

// SecretChecker is implemented by options whose secrets have a known form (a HighLevel
// Private Integration Token starts with "pit-"). CheckSecret says what is wrong with the
// value of the secret configured at key (relative to the connection, "locations[1].token"),
// or "" when nothing is. The message must not quote the value.
type SecretChecker interface {
	CheckSecret(key, value string) string
}

// VendorSection is what the configuration knows of a vendor.
type VendorSection struct {
	Name string // the `source` value
	// Concurrency is how many of a connection's accounts sync at once unless the file's
	// concurrency.<name> or the connection's concurrency says otherwise.
	Concurrency int
	// NewOptions returns a new zero value of the vendor's Options (a pointer to a struct).
	NewOptions func() Options
}

var (
	sectionsMu sync.RWMutex
	sections   = map[string]VendorSection{}
)

// RegisterVendor makes a vendor's section known. It panics on a duplicate name or an
// option key that is also a common connection key: both are programming errors.
func RegisterVendor(s VendorSection) {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	if _, dup := sections[s.Name]; dup || s.Name == "" || s.NewOptions == nil {
		panic(fmt.Sprintf("config: vendor %q registered twice, or without a name or options", s.Name))
	}
	t := reflect.TypeOf(s.NewOptions())
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: vendor %q: options must be a pointer to a struct, got %s", s.Name, t))
	}
	common := yamlFields(reflect.TypeOf(Connection{}))
	for key := range yamlFields(t.Elem()) {
		if _, clash := common[key]; clash {
			panic(fmt.Sprintf("config: vendor %q: option %q is a common connection key", s.Name, key))
		}
	}
	sections[s.Name] = s
}

// VendorNames lists the registered vendors, sorted.
func VendorNames() []string {
	sectionsMu.RLock()
	defer sectionsMu.RUnlock()
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func section(name string) (VendorSection, bool) {
	sectionsMu.RLock()
	defer sectionsMu.RUnlock()
	s, ok := sections[name]
	return s, ok
}

// vendorsWithKey lists the vendors (sorted) whose options have key.
func vendorsWithKey(key string) []string {
	var out []string
	for _, name := range VendorNames() {
		s, _ := section(name)
		if _, ok := yamlFields(reflect.TypeOf(s.NewOptions()).Elem())[key]; ok {
			out = append(out, name)
		}
	}
	return out
}

func knownSources() string { return strings.Join(VendorNames(), ", ") }

// cloneOptions copies an Options struct (shallowly: Defaults replaces, never edits, what it
// fills), so that WithDefaults leaves the parsed configuration as it was.
func cloneOptions(o Options) Options {
	if o == nil {
		return nil
	}
	v := reflect.ValueOf(o)
	c := reflect.New(v.Type().Elem())
	c.Elem().Set(v.Elem())
	return c.Interface().(Options)
}

// optionSecrets are the Secret fields of a connection's options, with their YAML keys,
// including those of lists of structs ("locations[1].token").
func optionSecrets(o Options) (keys []string, secrets []*Secret) {
	if o == nil {
		return nil, nil
	}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fv := v.Field(i)
			if s, ok := fv.Addr().Interface().(*Secret); ok {
				keys, secrets = append(keys, prefix+name), append(secrets, s)
				continue
			}
			if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
				for j := range fv.Len() {
					walk(fv.Index(j), fmt.Sprintf("%s%s[%d].", prefix, name, j))
				}
			}
		}
	}
	walk(reflect.ValueOf(o).Elem(), "")
	return keys, secrets
}

// Default is one connection key of a vendor and its default, written as YAML.
type Default struct{ Key, Value string }

// VendorDefaults lists the connection keys of the vendor named name that have a default:
// concurrency, then its options whose Defaults fill in a value, in the order its options
// declare them. `leadsync init` shows them as comments, read from the vendor's own Defaults
// rather than copied.
func VendorDefaults(name string) []Default {
	s, ok := section(name)
	if !ok {
		return nil
	}
	out := []Default{{Key: "concurrency", Value: fmt.Sprint(cmp.Or(s.Concurrency, 1))}}
	o := s.NewOptions()
	o.Defaults()
	v := reflect.ValueOf(o).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" || v.Field(i).IsZero() {
			continue
		}
		// JSON is YAML's flow style: strings quoted, lists in brackets, durations as text.
		b, err := json.Marshal(v.Field(i).Interface())
		if err != nil {
			continue
		}
		out = append(out, Default{Key: key, Value: string(b)})
	}
	return out
}
