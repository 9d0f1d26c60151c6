package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"takt.dev/edge-agent/internal/source"
)

// Value is a decoded reading.
type Value = source.Value

// orderBytes lays out regs (each big-endian on the wire, bytes "AB") in the byte
// order a device uses, so the result reads as big-endian: ABCD as is, CDAB with the
// words reversed, BADC with the bytes of each word swapped, DCBA both.
func orderBytes(regs []uint16, order string) []byte {
	b := make([]byte, 2*len(regs))
	wordSwap := order == "CDAB" || order == "DCBA"
	byteSwap := order == "BADC" || order == "DCBA"
	for i, r := range regs {
		j := i
		if wordSwap {
			j = len(regs) - 1 - i
		}
		hi, lo := byte(r>>8), byte(r)
		if byteSwap {
			hi, lo = lo, hi
		}
		b[2*j], b[2*j+1] = hi, lo
	}
	return b
}

// Decode turns the registers of one tag into its value. regs must hold exactly the
// registers the type takes (RegisterCount).
func Decode(regs []uint16, typ, order string) (Value, error) {
	order = strings.ToUpper(order)
	want := map[string]int{"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
		"int64": 4, "uint64": 4, "float64": 4}[typ]
	if typ == "string" {
		want = len(regs)
	}
	if want == 0 || len(regs) != want {
		return Value{}, fmt.Errorf("type %q from %d registers: want %d", typ, len(regs), want)
	}
	if typ == "string" {
		b := orderBytes(regs, map[string]string{"ABCD": "ABCD", "CDAB": "ABCD", "BADC": "BADC", "DCBA": "BADC"}[order])
		s := strings.TrimRight(string(b), "\x00 ")
		return Value{Text: strings.ToValidUTF8(s, "\uFFFD"), IsText: true}, nil
	}
	b := orderBytes(regs, order)
	var v float64
	switch typ {
	case "bool":
		if binary.BigEndian.Uint16(b) != 0 {
			v = 1
		}
	case "int16":
		v = float64(int16(binary.BigEndian.Uint16(b)))
	case "uint16":
		v = float64(binary.BigEndian.Uint16(b))
	case "int32":
		v = float64(int32(binary.BigEndian.Uint32(b)))
	case "uint32":
		v = float64(binary.BigEndian.Uint32(b))
	case "float32":
		// The shortest decimal that is this float32 (69.99, not 69.98999786376953).
		f := math.Float32frombits(binary.BigEndian.Uint32(b))
		if !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			v, _ = strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
		} else {
			v = float64(f)
		}
	case "int64":
		v = float64(int64(binary.BigEndian.Uint64(b)))
	case "uint64":
		v = float64(binary.BigEndian.Uint64(b))
	case "float64":
		v = math.Float64frombits(binary.BigEndian.Uint64(b))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Value{}, fmt.Errorf("type %s: registers %04x hold %v, not a finite number", typ, regs, v)
	}
	return Value{Num: v}, nil
}

// Encode is Decode's inverse for numbers, for simulators and tests: the registers a
// device using order would hold for v.
func Encode(v float64, typ, order string) []uint16 {
	var b []byte
	switch typ {
	case "bool", "uint16":
		b = binary.BigEndian.AppendUint16(nil, uint16(v))
	case "int16":
		b = binary.BigEndian.AppendUint16(nil, uint16(int16(v)))
	case "int32":
		b = binary.BigEndian.AppendUint32(nil, uint32(int32(v)))
	case "uint32":
		b = binary.BigEndian.AppendUint32(nil, uint32(v))
	case "float32":
		b = binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(v)))
	case "int64":
		b = binary.BigEndian.AppendUint64(nil, uint64(int64(v)))
	case "uint64":
		b = binary.BigEndian.AppendUint64(nil, uint64(v))
	case "float64":
		b = binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
	default:
		return nil
	}
	regs := make([]uint16, len(b)/2)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	// orderBytes is its own inverse for every order.
	out := orderBytes(regs, strings.ToUpper(order))
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(out[2*i:])
	}
	return regs
}

// EncodeString lays s out in n registers as a device using order would.
func EncodeString(s string, n int, order string) []uint16 {
	b := make([]byte, 2*n)
	copy(b, s)
	regs := make([]uint16, n)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	if o := strings.ToUpper(order); o == "BADC" || o == "DCBA" {
		out := orderBytes(regs, "BADC")
		for i := range regs {
			regs[i] = binary.BigEndian.Uint16(out[2*i:])
		}
	}
	return regs
}
