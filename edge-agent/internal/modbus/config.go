package modbus

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"takt.dev/edge-agent/internal/source"
)

// Config is one Modbus server (PLC, gateway, meter) polled on its own loop: the
// entries of an equipment's modbus list.
type Config struct {
	Name     string        `yaml:"name"`
	URL      string        `yaml:"url"`      // tcp://host:502, rtuovertcp://host:4001, rtu:///dev/ttyUSB0
	UnitID   uint8         `yaml:"unit_id"`  // default 1
	Interval time.Duration `yaml:"interval"` // default 1s
	Timeout  time.Duration `yaml:"timeout"`  // per request; default 2s
	GapFill  int           `yaml:"gap_fill"` // unused registers a merged request may span; default 10
	Baud     uint          `yaml:"baud"`     // rtu only; default 19200
	Parity   string        `yaml:"parity"`   // rtu only: none, even (default), odd
	Tags     []Tag         `yaml:"tags"`
}

// Tag is one register (or bit) read from the device.
type Tag struct {
	source.Tag `yaml:",inline"`
	Register   string `yaml:"register"`   // holding (default), input, coil, discrete
	Address    *int   `yaml:"address"`    // 0-based protocol address, 0..65535
	Type       string `yaml:"type"`       // bool, int16, uint16 (default), int32, uint32, int64, uint64, float32, float64, string
	ByteOrder  string `yaml:"byte_order"` // ABCD (default), DCBA, BADC, CDAB
	Length     int    `yaml:"length"`     // string only: registers
}

func (c *Config) SourceName() string { return c.Name }

func (c *Config) SourceTags() []source.Tag {
	return source.CommonTags(c.Tags, func(t *Tag) source.Tag { return t.Tag })
}

// Defaults fills the zero fields.
func (c *Config) Defaults(source.Env) {
	if c.UnitID == 0 {
		c.UnitID = 1
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.GapFill == 0 {
		c.GapFill = 10
	}
	if c.Baud == 0 {
		c.Baud = 19200
	}
	if c.Parity == "" {
		c.Parity = "even"
	}
	for k := range c.Tags {
		t := &c.Tags[k]
		t.Tag.Defaults()
		if t.Register == "" {
			t.Register = "holding"
		}
		if t.Type == "" {
			t.Type = "uint16"
			if t.Register == "coil" || t.Register == "discrete" {
				t.Type = "bool"
			}
		}
		if t.ByteOrder == "" {
			t.ByteOrder = "ABCD"
		}
		if t.Role == "counter" && t.Wrap == 0 {
			t.Wrap = DefaultWrap(t.Type)
		}
	}
}

// DefaultWrap is the value an unsigned counter of type typ wraps to 0 at, or 0 when
// the type has none worth naming.
func DefaultWrap(typ string) uint64 {
	switch typ {
	case "uint16":
		return 1 << 16
	case "uint32":
		return 1 << 32
	}
	return 0
}

// RegisterCount is how many 16-bit registers a type takes (bits take 1 "register").
func RegisterCount(typ string, length int) int {
	switch typ {
	case "bool", "int16", "uint16":
		return 1
	case "int32", "uint32", "float32":
		return 2
	case "int64", "uint64", "float64":
		return 4
	case "string":
		return length
	}
	return 0
}

var registers = map[string]bool{"holding": true, "input": true, "coil": true, "discrete": true}

// Validate reports every fault of the device's options.
func (c *Config) Validate() []error {
	var errs []error
	where := fmt.Sprintf("modbus device %q", c.Name)
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	if c.Name == "" {
		add("name: missing")
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		add("url %q: %v", c.URL, err)
	case u.Scheme == "tcp" || u.Scheme == "rtuovertcp":
		if u.Host == "" || u.Port() == "" {
			add("url %q: want %s://host:port", c.URL, u.Scheme)
		}
	case u.Scheme == "rtu":
		if u.Path == "" {
			add("url %q: want rtu:///dev/ttyUSB0", c.URL)
		}
		if c.Parity != "none" && c.Parity != "even" && c.Parity != "odd" {
			add("parity %q: want none, even or odd", c.Parity)
		}
	default:
		add("url %q: scheme must be tcp, rtuovertcp or rtu", c.URL)
	}
	if c.Interval < 10*time.Millisecond {
		add("interval %s: at least 10ms", c.Interval)
	}
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		add("timeout %s: want more than 0 and at most 1m", c.Timeout)
	}
	if c.GapFill < 0 || c.GapFill > 124 {
		add("gap_fill %d: want 0 to 124", c.GapFill)
	}
	if c.UnitID > 247 {
		add("unit_id %d: want 1 to 247 (0 is broadcast)", c.UnitID)
	}
	if len(c.Tags) == 0 {
		add("no tags")
	}
	for _, t := range c.Tags {
		for _, err := range append(t.validate(), t.Tag.Validate()...) {
			add("tag %q: %v", t.Name, err)
		}
	}
	return errs
}

func (t Tag) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !registers[t.Register] {
		add("register %q: want holding, input, coil or discrete", t.Register)
	}
	n := RegisterCount(t.Type, t.Length)
	switch {
	case t.Type == "string" && (t.Length < 1 || t.Length > 123):
		add("length %d: a string takes 1 to 123 registers", t.Length)
	case n == 0:
		add("type %q: unknown (want bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string)", t.Type)
	case (t.Register == "coil" || t.Register == "discrete") && t.Type != "bool":
		add("type %q: a %s holds one bit; use type bool", t.Type, t.Register)
	}
	if t.Address == nil {
		add("address: missing")
	} else if *t.Address < 0 || *t.Address+max(n, 1)-1 > 65535 {
		add("address %d: want 0 to %d for a %s", *t.Address, 65535-max(n, 1)+1, t.Type)
	}
	switch strings.ToUpper(t.ByteOrder) {
	case "ABCD", "DCBA", "BADC", "CDAB":
	default:
		add("byte_order %q: want ABCD, DCBA, BADC or CDAB", t.ByteOrder)
	}
	if t.Type == "string" && t.Role != "measurement" && t.Role != "product" {
		add("type string: only a measurement or a product can be text")
	}
	if (t.Role == "state" || t.Role == "counter" || t.Role == "product") && (t.Type == "float32" || t.Type == "float64") {
		add("type %q: a %s must be an integer type", t.Type, t.Role)
	}
	return errs
}

// driver is the Modbus source driver: the key modbus under an equipment.
type driver struct{}

func init() { source.Register(driver{}) }

func (driver) Key() string { return "modbus" }

func (driver) Decode(node *yaml.Node, path string, env source.Env) ([]source.Config, []error) {
	return source.DecodeList[Config](node, path, env)
}

func (driver) Runner(rt source.Runtime) func(context.Context, source.Config, func([]source.Reading)) {
	m := NewMetrics(rt.Registry)
	return func(ctx context.Context, c source.Config, emit func([]source.Reading)) {
		NewDevice(*c.(*Config), m, rt.Log).Run(ctx, emit)
	}
}
