package agent

import (
	"errors"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/source"
	"takt.dev/schemas"
)

func TestToSample(t *testing.T) {
	tags := []source.Tag{
		{Name: "speed", Role: "measurement", Scale: 0.1, Offset: -5},
		{Name: "state", Role: "state", Scale: 1, States: map[int64]source.StateOfCode{3: {State: "STOPPED_UNPLANNED", Reason: 101}}},
		{Name: "total", Role: "counter", Counter: "total", Scale: 1, Wrap: 65536},
		{Name: "lot", Role: "measurement", Scale: 1},
		{Name: "good", Role: "counter", Counter: "good", Scale: 1}, // no wrap configured (an OPC UA tag)
		{Name: "recipe", Role: "product", Scale: 1},
	}
	maps := mappingsOf(tags)
	ts := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	num := func(tag int, v float64) source.Reading {
		return source.Reading{Tag: tag, TS: ts, Value: source.Value{Num: v}}
	}
	cases := []struct {
		name string
		r    source.Reading
		want schemas.Sample
	}{
		{"scaled", num(0, 1000), schemas.Sample{Tag: "speed", Role: schemas.RoleMeasurement, Kind: schemas.NumberValue, Value: 95, Quality: schemas.QualityGood}},
		{"state code", num(1, 3), schemas.Sample{Tag: "state", Role: schemas.RoleState, Kind: schemas.NumberValue, Value: 3, State: schemas.StateStoppedUnplanned, Reason: 101, Quality: schemas.QualityGood}},
		{"unknown state code", num(1, 9), schemas.Sample{Tag: "state", Role: schemas.RoleState, Kind: schemas.NumberValue, Value: 9, State: schemas.StateUnknown, Quality: schemas.QualityUncertain}},
		{"count", num(2, 65535), schemas.Sample{Tag: "total", Role: schemas.RoleCounter, Kind: schemas.NumberValue, Value: 65535, Counter: schemas.CounterTotal, Wrap: 65536, Quality: schemas.QualityGood}},
		{"count beyond the wrap", num(2, 70000), schemas.Sample{Tag: "total", Role: schemas.RoleCounter, Value: 70000 /* not sent: Kind is NoValue */, Counter: schemas.CounterTotal, Wrap: 65536, Quality: schemas.QualityBad}},
		{"failed read", source.Reading{Tag: 0, TS: ts, Quality: source.Bad, Err: errors.New("timeout")}, schemas.Sample{Tag: "speed", Role: schemas.RoleMeasurement, Quality: schemas.QualityBad}},
		{"OPC UA UInt16 counter takes its type's wrap", source.Reading{Tag: 4, TS: ts, Value: source.Value{Num: 65535, Wrap: 65536}},
			schemas.Sample{Tag: "good", Role: schemas.RoleCounter, Kind: schemas.NumberValue, Value: 65535, Counter: schemas.CounterGood, Wrap: 65536, Quality: schemas.QualityGood}},
		{"OPC UA UInt32 counter takes its type's wrap", source.Reading{Tag: 4, TS: ts, Value: source.Value{Num: 7, Wrap: 1 << 32}},
			schemas.Sample{Tag: "good", Role: schemas.RoleCounter, Kind: schemas.NumberValue, Value: 7, Counter: schemas.CounterGood, Wrap: 1 << 32, Quality: schemas.QualityGood}},
		{"product code", source.Reading{Tag: 5, TS: ts, Value: source.Value{Text: " cola-05 ", IsText: true}},
			schemas.Sample{Tag: "recipe", Role: schemas.RoleProduct, Kind: schemas.TextValue, Text: "cola-05", Quality: schemas.QualityGood}},
		{"recipe number", num(5, 17), schemas.Sample{Tag: "recipe", Role: schemas.RoleProduct, Kind: schemas.TextValue, Text: "17", Quality: schemas.QualityGood}},
		{"text", source.Reading{Tag: 3, TS: ts, Value: source.Value{Text: "LOT-7", IsText: true}}, schemas.Sample{Tag: "lot", Role: schemas.RoleMeasurement, Kind: schemas.TextValue, Text: "LOT-7", Quality: schemas.QualityGood}},
	}
	for _, c := range cases {
		c.want.TS = ts
		if got := toSample(&maps[c.r.Tag], c.r); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}
