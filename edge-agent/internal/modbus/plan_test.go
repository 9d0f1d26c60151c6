package modbus

import (
	"reflect"
	"takt.dev/edge-agent/internal/source"
	"testing"
)

func tag(name, register, typ string, addr int) Tag {
	return Tag{Tag: source.Tag{Name: name}, Register: register, Type: typ, Address: &addr, Length: 4}
}

func TestPlanMergesAdjacentAddresses(t *testing.T) {
	tags := []Tag{
		tag("a", "holding", "uint16", 0),
		tag("b", "holding", "float32", 1), // 1..2
		tag("c", "holding", "uint16", 10), // gap of 7 ≤ 10: merged
		tag("d", "holding", "uint16", 30), // gap of 19: new request
		tag("e", "coil", "bool", 5),
		tag("f", "coil", "bool", 12),     // gap of 6: merged
		tag("g", "coil", "bool", 2010),   // far: new request
		tag("h", "input", "string", 100), // 100..103
		tag("i", "holding", "float64", 3),
	}
	got := Plan(tags, 10)
	want := []Request{
		{Register: "coil", Start: 5, Count: 8, Tags: []Slot{{4, 0, 1}, {5, 7, 1}}},
		{Register: "coil", Start: 2010, Count: 1, Tags: []Slot{{6, 0, 1}}},
		{Register: "holding", Start: 0, Count: 11, Tags: []Slot{{0, 0, 1}, {1, 1, 2}, {8, 3, 4}, {2, 10, 1}}},
		{Register: "holding", Start: 30, Count: 1, Tags: []Slot{{3, 0, 1}}},
		{Register: "input", Start: 100, Count: 4, Tags: []Slot{{7, 0, 4}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan =\n%+v\nwant\n%+v", got, want)
	}
}

func TestPlanRespectsRegisterLimit(t *testing.T) {
	var tags []Tag
	for i := range 200 {
		tags = append(tags, tag("t", "holding", "uint16", i))
	}
	got := Plan(tags, 0)
	if len(got) != 2 || got[0].Count != MaxRegisters || got[1].Count != 200-MaxRegisters {
		t.Fatalf("200 adjacent registers planned as %d requests (%d, ...)", len(got), got[0].Count)
	}
	var coils []Tag
	for i := range 2001 {
		coils = append(coils, tag("c", "coil", "bool", i))
	}
	if got := Plan(coils, 0); len(got) != 2 || got[0].Count != MaxBits {
		t.Fatalf("2001 adjacent coils planned as %d requests", len(got))
	}
	if got := Plan(tags[:3], 0); len(got) != 1 {
		t.Fatalf("gap_fill 0 must still merge adjacent addresses: %d requests", len(got))
	}
}
