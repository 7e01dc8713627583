package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The file is parsed into a yaml.Node tree and decoded by walking it, rather than with
// yaml.Decoder.KnownFields: that way every error carries the full key path and its line,
// duplicate keys are caught, and all problems are reported at once.

// scalarDecoder is implemented by types written as one YAML scalar (Duration, Date).
type scalarDecoder interface {
	decodeScalar(value string) error
}

// inlineRejecter is implemented by mapping types that must not be written as a scalar
// (Secret): the message explains what to write instead.
type inlineRejecter interface {
	inlineError() string
}

// fieldSetter lets a decoded value remember where it came from (Secret, for Resolve errors).
type fieldSetter interface {
	setField(path string, line int)
}

// The values decoded through aliases (*name) and merge keys (<<: *name) are bounded:
// nested aliases multiply, so a few hundred bytes could otherwise expand to billions of
// values. The budget grows with the file, so that many connections merging one block of
// defaults (about 20 values for each 30 bytes of `- <<: *defaults` and a name) still fit.
const (
	aliasBudgetBase    = 10000
	aliasBudgetPerByte = 10
)

type decoder struct {
	file  string
	errs  []*Error
	lines map[string]int

	viaAlias  int        // depth of alias expansions around the value being decoded
	outer     *yaml.Node // the outermost alias being expanded, for the error
	outerPath string
	budget    int // values that may still be decoded through aliases
	overspent bool
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func decodeConfig(data []byte, name string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		e := &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		return nil, e
	}
	d := &decoder{file: name, lines: map[string]int{}, budget: aliasBudgetBase + aliasBudgetPerByte*len(data)}
	c := &Config{}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		d.decode(root.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	if err := asError(d.errs); err != nil {
		return nil, err
	}
	c.file = name
	c.lines = d.lines
	return c, nil
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Field: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// enter follows n's aliases, if any; leave must be called when the value is decoded.
func (d *decoder) enter(n *yaml.Node, path string) (target *yaml.Node, leave func()) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}
	}
	if d.viaAlias == 0 {
		d.outer, d.outerPath = n, path
	}
	d.viaAlias++
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n, func() { d.viaAlias-- }
}

// spend counts one value decoded through an alias and reports whether the budget allows it.
// The first time it does not, it records the error at the outermost alias.
func (d *decoder) spend() bool {
	if d.overspent {
		return false
	}
	if d.viaAlias == 0 {
		return true
	}
	if d.budget > 0 {
		d.budget--
		return true
	}
	d.overspent = true
	d.fail(d.outerPath, d.outer, "aliases and merge keys (*name, <<) expand to more values than a file "+
		"of this size may (%d + %d per byte); refusing it (an alias bomb?): write the repeated blocks out",
		aliasBudgetBase, aliasBudgetPerByte)
	return false
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n, leave := d.enter(n, path)
	defer leave()
	if !d.spend() {
		return
	}
	if path != "" {
		if _, ok := d.lines[path]; !ok {
			d.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // `key:` with no value keeps the default
	}
	if v.CanAddr() {
		switch p := v.Addr().Interface().(type) {
		case scalarDecoder:
			if n.Kind != yaml.ScalarNode {
				d.fail(path, n, "expected a single value, got %s", kindName(n))
				return
			}
			if err := p.decodeScalar(n.Value); err != nil {
				d.fail(path, n, "%v", err)
			}
			return
		case inlineRejecter:
			if n.Kind == yaml.ScalarNode {
				d.fail(path, n, "%s", p.inlineError())
				return
			}
		}
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if conn, ok := v.Addr().Interface().(*Connection); ok {
			d.decodeConnection(n, conn, path)
			return
		}
		d.decodeStruct(n, []reflect.Value{v}, path, nil)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(path, n, "expected a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(path, n, "expected true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(path, n, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type())) // a programming error in this package
	}
}

// decodeConnection decodes one connection: the common keys into conn, the vendor's own
// (written flat next to them) into a new Options of the vendor its source names.
func (d *decoder) decodeConnection(n *yaml.Node, conn *Connection, path string) {
	targets := []reflect.Value{reflect.ValueOf(conn).Elem()}
	source := scalarAt(n, "source", 0)
	if len(VendorNames()) == 0 {
		// A programming error, said plainly rather than as "unknown field" for every option.
		panic("config: no vendor is registered: import github.com/leadsync/leadsync/sources/all")
	}
	if s, ok := section(source); ok {
		conn.Options = s.NewOptions()
		targets = append(targets, reflect.ValueOf(conn.Options).Elem())
	}
	d.decodeStruct(n, targets, path, &source)
}

// scalarAt is the scalar value of key in mapping n, following aliases and merge keys as
// decodeStruct does (keys written next to << win; of several merged mappings, the first),
// or "" when there is none. depth bounds merges of merges.
func scalarAt(n *yaml.Node, key string, depth int) string {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode || depth > 16 {
		return ""
	}
	var merged string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "<<" && k.Tag == "!!merge":
			for val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			list := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				list = val.Content
			}
			for _, m := range list {
				if merged == "" {
					merged = scalarAt(m, key, depth+1)
				}
			}
		case k.Value == key:
			for val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			if val.Kind == yaml.ScalarNode {
				return val.Value
			}
			return ""
		}
	}
	return merged
}

// decodeStruct decodes mapping n into targets: each key goes to the first target struct
// with a field of that name. source is set for a connection (to its source, maybe ""): a key
// that a vendor's options have is then not a typo.
func (d *decoder) decodeStruct(n *yaml.Node, targets []reflect.Value, path string, source *string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping (key: value lines), got %s", describe(n))
		return
	}
	type field struct{ target, index int }
	fields, names := map[string]field{}, map[string]int{}
	for t, v := range targets {
		for name, idx := range yamlFields(v.Type()) {
			if _, ok := fields[name]; !ok {
				fields[name], names[name] = field{t, idx}, idx
			}
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.spend() {
			return
		}
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.Tag == "!!merge" {
			d.merge(val, targets, path, source)
			continue
		}
		key := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(key, k, "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fd, ok := fields[k.Value]
		if !ok {
			d.unknownKey(key, k, names, source)
			continue
		}
		d.lines[key] = k.Line
		d.decode(val, targets[fd.target].Field(fd.index), key)
	}
	for _, v := range targets {
		if fs, ok := v.Addr().Interface().(fieldSetter); ok {
			fs.setField(path, n.Line)
		}
	}
}

// unknownKey reports a key no target has: another vendor's option on a connection, a key
// of an unregistered source (its source is the error), or a typo.
func (d *decoder) unknownKey(key string, k *yaml.Node, names map[string]int, source *string) {
	if source != nil {
		if owners := vendorsWithKey(k.Value); len(owners) > 0 {
			if _, known := section(*source); known {
				d.fail(key, k, "is a %s option; this connection's source is %s", strings.Join(owners, "/"), *source)
			}
			return
		}
	}
	msg := "unknown field"
	if s := suggest(k.Value, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	d.fail(key, k, "%s", msg)
}

// decodeMap decodes a mapping with string keys (concurrency: {vendor: n}); the keys are
// checked by Validate.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping (key: value lines), got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.spend() {
			return
		}
		k, val := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.fail(key, k, "expected a name here, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(key, k, "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[key] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, key)
		v.SetMapIndex(reflect.ValueOf(k.Value), elem)
	}
}

// merge applies a YAML merge key (`<<: *defaults`): the merged mappings are decoded first,
// so the keys written next to `<<` win.
func (d *decoder) merge(n *yaml.Node, targets []reflect.Value, path string, source *string) {
	n, leave := d.enter(n, path)
	defer leave()
	if !d.spend() {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		d.decodeStruct(n, targets, path, source)
	case yaml.SequenceNode:
		for i := len(n.Content) - 1; i >= 0; i-- {
			d.merge(n.Content[i], targets, path, source)
		}
	default:
		d.fail(path, n, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(n))
	}
}

func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		m[name] = i
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// describe names a node for an error: scalars are quoted (config values here are never
// secrets: secrets can only be references, and an inline one is rejected before this).
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	return kindName(n)
}

// suggest returns the known key closest to a misspelled one, if it is close.
func suggest(key string, fields map[string]int) string {
	best, bestD := "", 3 // farther than 2 edits is not a typo
	for f := range fields {
		if dist := editDistance(key, f); dist < bestD || (dist == bestD && best != "" && f < best) {
			best, bestD = f, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
