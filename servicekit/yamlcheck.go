package servicekit

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// CheckYAML reports every key of a YAML document that cfg (a pointer to the
// configuration struct) has no field for, each with its line and its path in the
// file (mqtt.securty_policy), the keys that would fit, and the closest of them: all
// at once, in the words of the file, never a Go type name. It reports YAML syntax
// errors too; it does not decode.
func CheckYAML(data []byte, cfg any) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{err}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	var errs []error
	walk(doc.Content[0], reflect.TypeOf(cfg), "", &errs)
	return errs
}

func walk(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode || t.PkgPath() == "time" {
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				if _, open := fields[anyKey]; open {
					continue // an inline map takes other keys: its owner checks them
				}
				*errs = append(*errs, unknownKey(k, join(path, k.Value), fields))
				continue
			}
			walk(v, ft, join(path, k.Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			walk(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// anyKey marks, in yamlFields, a struct with an inline map: it takes any key.
const anyKey = "\x00any"

// DecodeYAMLNode decodes node, the part of a document found at path, into v (a
// pointer), as DecodeYAML does a whole document: every unknown key and every value
// that does not fit, each with its line and path. It lets a part of a program (a
// source driver) own the options under one key of a larger file.
func DecodeYAMLNode(node *yaml.Node, path string, v any) []error {
	var errs []error
	walk(node, reflect.TypeOf(v), path, &errs)
	expand(node, path, &errs)
	var te *yaml.TypeError
	if err := node.Decode(v); errors.As(err, &te) {
		for _, e := range te.Errors {
			errs = append(errs, errors.New(plainTypes.Replace(e)))
		}
	} else if err != nil {
		errs = append(errs, err)
	}
	return errs
}

// yamlFields maps a struct's YAML keys to their types (inline structs included).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if f.Type.Kind() == reflect.Map {
				out[anyKey] = f.Type.Elem()
				continue
			}
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func unknownKey(k *yaml.Node, path string, fields map[string]reflect.Type) error {
	known := make([]string, 0, len(fields))
	for name := range fields {
		if name != anyKey {
			known = append(known, name)
		}
	}
	sort.Strings(known)
	msg := fmt.Sprintf("line %d: %s: unknown key", k.Line, path)
	if best := Closest(k.Value, known); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return errors.New(msg + "; known here: " + strings.Join(known, ", "))
}

// Closest is the name within a few edits of word (a misspelling of it), or "".
func Closest(word string, names []string) string {
	best, bestD := "", 1<<30
	for _, name := range names {
		if d := distance(strings.ToLower(word), name); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" && bestD <= max(2, len(word)/3) {
		return best
	}
	return ""
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
