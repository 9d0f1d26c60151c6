package modbus

import (
	"math"
	"testing"
)

// The byte orders, for the 32-bit value 0x11223344 ("A"=0x11 ... "D"=0x44) as a
// device sends it in two registers.
func TestDecodeByteOrders32(t *testing.T) {
	cases := []struct {
		order string
		regs  []uint16
	}{
		{"ABCD", []uint16{0x1122, 0x3344}},
		{"CDAB", []uint16{0x3344, 0x1122}},
		{"BADC", []uint16{0x2211, 0x4433}},
		{"DCBA", []uint16{0x4433, 0x2211}},
	}
	for _, c := range cases {
		v, err := Decode(c.regs, "uint32", c.order)
		if err != nil || v.Num != 0x11223344 {
			t.Errorf("uint32 %s from %04x = %v, %v; want %d", c.order, c.regs, v.Num, err, 0x11223344)
		}
	}
}

func TestDecodeByteOrders64(t *testing.T) {
	// 0x0102030405060708
	cases := []struct {
		order string
		regs  []uint16
	}{
		{"ABCD", []uint16{0x0102, 0x0304, 0x0506, 0x0708}},
		{"CDAB", []uint16{0x0708, 0x0506, 0x0304, 0x0102}},
		{"BADC", []uint16{0x0201, 0x0403, 0x0605, 0x0807}},
		{"DCBA", []uint16{0x0807, 0x0605, 0x0403, 0x0201}},
	}
	for _, c := range cases {
		v, err := Decode(c.regs, "uint64", c.order)
		if err != nil || v.Num != float64(0x0102030405060708) {
			t.Errorf("uint64 %s from %04x = %v, %v", c.order, c.regs, v.Num, err)
		}
	}
}

func TestDecodeTypes(t *testing.T) {
	cases := []struct {
		typ   string
		order string
		regs  []uint16
		want  float64
	}{
		{"bool", "ABCD", []uint16{0}, 0},
		{"bool", "ABCD", []uint16{0x0100}, 1},
		{"uint16", "ABCD", []uint16{0xFFFF}, 65535},
		{"uint16", "BADC", []uint16{0x3412}, 0x1234},
		{"int16", "ABCD", []uint16{0xFFFE}, -2},
		{"int16", "DCBA", []uint16{0xFEFF}, -2},
		{"int32", "ABCD", []uint16{0xFFFF, 0xFFFD}, -3},
		{"int32", "CDAB", []uint16{0xFFFD, 0xFFFF}, -3},
		{"uint32", "ABCD", []uint16{0xFFFF, 0xFFFF}, 4294967295},
		{"float32", "ABCD", []uint16{0x4049, 0x0FDB}, 3.1415927},
		{"float32", "CDAB", []uint16{0x0FDB, 0x4049}, 3.1415927},
		{"float32", "BADC", []uint16{0x4940, 0xDB0F}, 3.1415927},
		{"float32", "DCBA", []uint16{0xDB0F, 0x4940}, 3.1415927},
		{"int64", "ABCD", []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFF6}, -10},
		{"float64", "ABCD", []uint16{0x4005, 0xBF0A, 0x8B14, 0x5769}, math.E},
		{"float64", "DCBA", []uint16{0x6957, 0x148B, 0x0ABF, 0x0540}, math.E},
		{"float32", "ABCD", []uint16{0xC2F6, 0xE979}, -123.456},
	}
	for _, c := range cases {
		v, err := Decode(c.regs, c.typ, c.order)
		if err != nil || v.Num != c.want {
			t.Errorf("%s %s from %04x = %v, %v; want %v", c.typ, c.order, c.regs, v.Num, err, c.want)
		}
	}
}

func TestDecodeString(t *testing.T) {
	for _, c := range []struct {
		order string
		regs  []uint16
	}{
		{"ABCD", []uint16{0x4C4F, 0x542D, 0x3700, 0x0000}},
		{"BADC", []uint16{0x4F4C, 0x2D54, 0x0037, 0x0000}},
	} {
		v, err := Decode(c.regs, "string", c.order)
		if err != nil || !v.IsText || v.Text != "LOT-7" {
			t.Errorf("string %s = %q, %v; want LOT-7", c.order, v.Text, err)
		}
	}
	if v, _ := Decode([]uint16{0xFFFE}, "string", "ABCD"); v.Text != "\uFFFD" {
		t.Errorf("invalid UTF-8 decoded as %q", v.Text)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, c := range []struct {
		typ  string
		regs []uint16
	}{
		{"float32", []uint16{0x7FC0, 0x0000}},  // NaN
		{"float32", []uint16{0x7F80, 0x0000}},  // +Inf
		{"float64", []uint16{0xFFF0, 0, 0, 0}}, // -Inf
		{"int32", []uint16{1}},                 // too few registers
		{"FLOAT23", []uint16{1, 2}},
	} {
		if _, err := Decode(c.regs, c.typ, "ABCD"); err == nil {
			t.Errorf("Decode(%s, %04x) accepted", c.typ, c.regs)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, typ := range []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"} {
		for _, order := range []string{"ABCD", "DCBA", "BADC", "CDAB"} {
			for _, v := range []float64{0, 1, 100, 12345} {
				if typ == "bool" && v > 1 {
					continue
				}
				got, err := Decode(Encode(v, typ, order), typ, order)
				if err != nil || got.Num != v {
					t.Errorf("%s %s: %v came back as %v (%v)", typ, order, v, got.Num, err)
				}
			}
		}
	}
	got, _ := Decode(EncodeString("AB-12", 4, "DCBA"), "string", "DCBA")
	if got.Text != "AB-12" {
		t.Errorf("string round trip: %q", got.Text)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x40, 0x49, 0x0f, 0xdb}, uint8(0), uint8(0))
	f.Add([]byte{0x7f, 0xc0, 0, 0, 1, 2, 3, 4}, uint8(7), uint8(3))
	types := []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}
	orders := []string{"ABCD", "DCBA", "BADC", "CDAB"}
	f.Fuzz(func(t *testing.T, raw []byte, ti, oi uint8) {
		regs := make([]uint16, len(raw)/2)
		for i := range regs {
			regs[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
		}
		typ, order := types[int(ti)%len(types)], orders[int(oi)%len(orders)]
		v, err := Decode(regs, typ, order)
		if err != nil {
			return
		}
		if !v.IsText && (math.IsNaN(v.Num) || math.IsInf(v.Num, 0)) {
			t.Fatalf("Decode returned %v without an error", v.Num)
		}
		if typ != "string" && typ != "bool" && RegisterCount(typ, 0) == len(regs) {
			// Encoding the value again gives back the registers for exact types.
			if typ == "int16" || typ == "uint16" || typ == "int32" || typ == "uint32" || typ == "float32" {
				again := Encode(v.Num, typ, order)
				for i := range again {
					if again[i] != regs[i] {
						t.Fatalf("%s %s: %04x decoded to %v, encodes to %04x", typ, order, regs, v.Num, again)
					}
				}
			}
		}
	})
}
