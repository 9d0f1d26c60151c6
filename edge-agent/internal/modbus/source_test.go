package modbus

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/source"
)

func addr(a int) *int { return &a }

// rtuOverTCP serves Modbus RTU frames over TCP (as serial-to-Ethernet gateways do)
// for function 3, answering register i with value 1000+i, so that the rtuovertcp
// transport is exercised against something that is not our client's own library.
func rtuOverTCP(t *testing.T, unit byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req := make([]byte, 8)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					if crc16(req[:6]) != binary.LittleEndian.Uint16(req[6:]) || req[0] != unit || req[1] != 3 {
						continue // a device ignores frames that are not for it or garbled
					}
					start, qty := binary.BigEndian.Uint16(req[2:]), binary.BigEndian.Uint16(req[4:])
					resp := []byte{unit, 3, byte(2 * qty)}
					for i := range qty {
						resp = binary.BigEndian.AppendUint16(resp, 1000+start+i)
					}
					resp = binary.LittleEndian.AppendUint16(resp, crc16(resp))
					c.Write(resp)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func TestRTUOverTCP(t *testing.T) {
	dev := Config{Name: "gw", URL: "rtuovertcp://" + rtuOverTCP(t, 7), UnitID: 7, Interval: 50 * time.Millisecond,
		Timeout: time.Second, GapFill: 10, Tags: []Tag{
			{Tag: source.Tag{Name: "a"}, Register: "holding", Address: addr(5), Type: "uint16", ByteOrder: "ABCD"},
			{Tag: source.Tag{Name: "b"}, Register: "holding", Address: addr(8), Type: "uint32", ByteOrder: "ABCD"},
		}}
	d := NewDevice(dev, NewMetrics(nil), slog.New(slog.DiscardHandler))
	if d.Requests() != 1 {
		t.Fatalf("%d requests, want the two tags merged into one", d.Requests())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []source.Reading, 4)
	go d.Run(ctx, func(rs []source.Reading) { got <- rs })
	select {
	case rs := <-got:
		if len(rs) != 2 || rs[0].Quality != source.Good || rs[0].Value.Num != 1005 || rs[1].Value.Num != float64(1008<<16|1009) {
			t.Fatalf("readings %+v", rs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no poll")
	}
}

func TestWrongUnitTimesOutAsBadQuality(t *testing.T) {
	dev := Config{Name: "gw", URL: "rtuovertcp://" + rtuOverTCP(t, 7), UnitID: 9, Interval: 50 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Tags: []Tag{{Tag: source.Tag{Name: "a"}, Register: "holding", Address: addr(5), Type: "uint16", ByteOrder: "ABCD"}}}
	d := NewDevice(dev, NewMetrics(nil), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []source.Reading, 4)
	go d.Run(ctx, func(rs []source.Reading) { got <- rs })
	select {
	case rs := <-got:
		if rs[0].Quality != source.Bad || rs[0].Err == nil {
			t.Fatalf("a device that never answers gave %+v", rs[0])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no poll")
	}
}
