package source

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"takt.dev/schemas"
	"takt.dev/servicekit"
)

// Tag is what every tag has, whatever its driver: its name and what it means to
// Takt. A driver's tag type embeds it (yaml ",inline") beside its own address fields.
type Tag struct {
	Name    string                `yaml:"name"`
	Role    string                `yaml:"role"`    // measurement (default), state, counter, product (the product code running: a text, or a recipe number)
	Scale   float64               `yaml:"scale"`   // value = raw * scale + offset; default 1
	Offset  float64               `yaml:"offset"`  //
	Counter string                `yaml:"counter"` // counter only: total, good, scrap
	Wrap    uint64                `yaml:"wrap"`    // counter only: wraps to 0 here; default from the driver's type (uint16: 65536)
	States  map[int64]StateOfCode `yaml:"states"`  // state only: PLC code → category and reason
}

// StateOfCode is what one PLC state code means.
type StateOfCode struct {
	State  string `yaml:"state"`  // RUNNING, SETUP, STOPPED_UNPLANNED, IDLE, PLANNED_DOWN, NOT_SCHEDULED, UNKNOWN
	Reason uint32 `yaml:"reason"` // reason code within the category
}

// Defaults fills the common defaults: role measurement, scale 1.
func (t *Tag) Defaults() {
	if t.Role == "" {
		t.Role = "measurement"
	}
	if t.Scale == 0 {
		t.Scale = 1
	}
}

// Validate checks what a tag's role needs, whatever its source.
func (t Tag) Validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if t.Name == "" {
		add("name: missing")
	}
	switch t.Role {
	case "measurement":
		if t.Counter != "" || t.States != nil {
			add("role measurement: counter and states are for counter and state tags")
		}
	case "state":
		if len(t.States) == 0 {
			add("states: a state tag maps PLC codes to states; none given")
		}
		for code, s := range t.States {
			if _, err := schemas.ParseStateCategory(s.State); err != nil {
				add("states[%d]: %v", code, err)
			}
		}
	case "counter":
		if _, err := schemas.ParseCounterKind(t.Counter); err != nil {
			add("counter: %v", err)
		}
		if t.Scale != 1 || t.Offset != 0 {
			add("scale/offset: a counter counts parts; scale and offset do not apply")
		}
	case "product":
		if t.Counter != "" || t.States != nil || t.Scale != 1 || t.Offset != 0 {
			add("role product: names the product running (a text, or a recipe number); counter, states, scale and offset do not apply")
		}
	default:
		add("role %q: want measurement, state, counter or product", t.Role)
	}
	return errs
}

// Config is one configured source of an equipment (a Modbus device, an OPC UA
// server), as its driver decoded it.
type Config interface {
	SourceName() string
	// SourceTags are its tags' common part, in the order Reading.Tag indexes.
	SourceTags() []Tag
}

// Env is what a driver's defaults may depend on.
type Env struct {
	AgentID string
	Dir     string // the agent's state directory (buffer.dir)
}

// Runtime is what a driver's sources run with.
type Runtime struct {
	AgentID  string
	Log      *slog.Logger
	Registry prometheus.Registerer
}

// Driver is a kind of source: a protocol the agent reads. A driver package
// declares its options (the list under its key in an equipment), fills their
// defaults, validates them and runs them, and registers itself with Register from
// an init function; the package internal/drivers imports every driver. Adding a
// driver touches only its own folder and that list, as a Telegraf plugin does.
type Driver interface {
	// Key is the YAML key, under an equipment, of the list of this driver's sources.
	Key() string
	// Decode reads that list (node; path says where it is, as
	// equipment[0].modbus), fills the defaults and validates, reporting every
	// fault at once: unknown keys and misfit values with their line and path, and
	// what validation finds naming the source and tag.
	Decode(node *yaml.Node, path string, env Env) ([]Config, []error)
	// Runner returns what runs one of the driver's sources until ctx ends, with
	// the driver's metrics registered once with rt.Registry.
	Runner(rt Runtime) func(ctx context.Context, c Config, emit func([]Reading))
}

var (
	mu      sync.Mutex
	drivers = map[string]Driver{}
)

// Register makes a driver known by its key. Registering a key twice panics: it is
// a programming error.
func Register(d Driver) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[d.Key()]; dup {
		panic("source: driver " + d.Key() + " registered twice")
	}
	drivers[d.Key()] = d
}

// Lookup returns the driver of key, or nil.
func Lookup(key string) Driver {
	mu.Lock()
	defer mu.Unlock()
	return drivers[key]
}

// Keys lists the registered drivers' keys, sorted.
func Keys() []string {
	mu.Lock()
	defer mu.Unlock()
	keys := make([]string, 0, len(drivers))
	for k := range drivers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Options is what a driver's option type (C) offers through its pointer: the
// source's name and tags, its defaults (env holds what they may depend on), and its
// validation (every fault).
type Options[C any] interface {
	*C
	Config
	Defaults(env Env)
	Validate() []error
}

// DecodeList is a driver's Decode for a list of options of type C: every unknown
// key and misfit value with its line and path, then defaults and validation.
func DecodeList[C any, P Options[C]](node *yaml.Node, path string, env Env) ([]Config, []error) {
	var list []C
	errs := servicekit.DecodeYAMLNode(node, path, &list)
	out := make([]Config, len(list))
	for i := range list {
		c := P(&list[i])
		c.Defaults(env)
		errs = append(errs, c.Validate()...)
		out[i] = c
	}
	return out, errs
}

// CommonTags returns the common part of each of a driver's tags.
func CommonTags[T any](tags []T, common func(*T) Tag) []Tag {
	out := make([]Tag, len(tags))
	for i := range tags {
		out[i] = common(&tags[i])
	}
	return out
}
