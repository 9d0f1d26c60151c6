package servicekit

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// References in configuration values, so that secrets need not sit in the file:
//
//	password: ${MQTT_PASSWORD}            the environment variable (an error if unset)
//	password: ${file:/run/secrets/mqtt}   the file's content, without its final newline
//	note: costs $${PRICE}                 a literal ${PRICE}
//
// A reference may be part of a value: postgres://takt:${DB_PASSWORD}@db/takt.
var refPattern = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// expand replaces the references in every scalar of n (at path) and reports every
// one that cannot be resolved, with its line and path. Values are never echoed.
func expand(n *yaml.Node, path string, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = path + "[" + strconv.Itoa(i) + "]"
			}
			expand(c, p, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expand(n.Content[i+1], join(path, n.Content[i].Value), errs)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = refPattern.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$${" {
				return "${"
			}
			ref := m[2 : len(m)-1]
			v, err := Resolve(ref)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("line %d: %s: %v", n.Line, path, err))
			}
			return v
		})
		if n.Tag == "!!int" || n.Tag == "!!float" || n.Tag == "!!bool" || n.Tag == "!!null" {
			n.Tag = "" // let the decoder read the value as the field wants it
		}
	}
}

// Resolve returns the value of one reference: NAME (an environment variable) or
// file:PATH (a file's content without its final newline).
func Resolve(ref string) (string, error) {
	if p, ok := strings.CutPrefix(ref, "file:"); ok {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("${file:%s}: %w", p, errors.Unwrap(err))
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
	}
	if ref == "" || strings.ContainsAny(ref, " \t$") {
		return "", fmt.Errorf("${%s}: want ${NAME} or ${file:/path}", ref)
	}
	v, ok := os.LookupEnv(ref)
	if !ok {
		return "", fmt.Errorf("${%s}: the environment variable is not set", ref)
	}
	return v, nil
}

// Env returns the environment variable name's value by getenv, or, when it is
// empty and name_FILE is set, the content of that file (the convention of
// container secrets): DATABASE_URL, or DATABASE_URL_FILE=/run/secrets/db.
func Env(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	file := getenv(name + "_FILE")
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}
