// Package modbus is the agent's Modbus source: one polling loop per device (TCP,
// RTU over TCP, or serial RTU, with simonvetter/modbus), reading coils, discrete
// inputs, holding and input registers in as few requests as the protocol allows and
// decoding them into values (see README.md for every option).
//
// Contract: every poll yields one Reading per tag. A tag whose read failed gets a
// Reading with Err set (bad quality), never a repeated last value. A device that
// times out delays only its own loop. A lost connection is reopened with bounded
// exponential backoff; a Modbus exception (a wrong address, say) is a configuration
// problem and is logged once per request, not retried as a connection failure.
package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	mb "github.com/simonvetter/modbus"

	"takt.dev/edge-agent/internal/source"
	"takt.dev/servicekit"
)

// Reading is one tag's outcome of one poll.
type Reading = source.Reading

// Device polls one Modbus server.
type Device struct {
	cfg    Config
	plan   []Request
	m      *Metrics
	log    *slog.Logger
	now    func() time.Time
	client *mb.ModbusClient
	warned map[int]bool // requests whose exception was logged
}

// NewDevice prepares the device's read plan. cfg must be validated.
func NewDevice(cfg Config, m *Metrics, log *slog.Logger) *Device {
	return &Device{cfg: cfg, plan: Plan(cfg.Tags, cfg.GapFill), m: m, now: time.Now, warned: map[int]bool{},
		log: log.With("modbus_device", cfg.Name, "url", cfg.URL)}
}

// Requests is the number of requests one poll makes.
func (d *Device) Requests() int { return len(d.plan) }

// Run polls every Interval until ctx ends, handing each poll's readings to emit.
func (d *Device) Run(ctx context.Context, emit func([]Reading)) {
	defer d.close()
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	backoff, nextDial := servicekit.Backoff(d.cfg.Interval, 30*time.Second), time.Time{}
	for {
		if d.client == nil && !d.now().Before(nextDial) {
			if err := d.open(); err != nil {
				wait := backoff.NextBackOff()
				d.m.errors.WithLabelValues(d.cfg.Name, "connect").Inc()
				d.log.Warn("cannot connect; retrying", "in", wait, "err", err)
				nextDial = d.now().Add(wait)
			} else {
				backoff.Reset()
				d.m.connected.WithLabelValues(d.cfg.Name).Set(1)
			}
		}
		emit(d.poll())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (d *Device) open() error {
	u, _ := url.Parse(d.cfg.URL)
	target := u.Host
	if u.Scheme == "rtu" {
		target = u.Path
	}
	conf := &mb.ClientConfiguration{URL: u.Scheme + "://" + target, Timeout: d.cfg.Timeout, Speed: d.cfg.Baud}
	if u.Scheme == "rtu" {
		conf.DataBits, conf.StopBits = 8, 1
		conf.Parity = map[string]uint{"none": mb.PARITY_NONE, "even": mb.PARITY_EVEN, "odd": mb.PARITY_ODD}[d.cfg.Parity]
		if conf.Parity == mb.PARITY_NONE {
			conf.StopBits = 2
		}
	}
	c, err := mb.NewClient(conf)
	if err != nil {
		return err
	}
	if err := c.Open(); err != nil {
		return err
	}
	if err := c.SetUnitId(d.cfg.UnitID); err != nil {
		c.Close()
		return err
	}
	d.client = c
	return nil
}

func (d *Device) close() {
	if d.client != nil {
		d.client.Close()
		d.client = nil
		d.m.connected.WithLabelValues(d.cfg.Name).Set(0)
	}
}

var errNotConnected = errors.New("not connected")

// poll reads every request once and decodes every tag.
func (d *Device) poll() []Reading {
	start := d.now()
	out := make([]Reading, 0, len(d.cfg.Tags))
	failed := false
	for i, r := range d.plan {
		ts := d.now()
		var regs []uint16
		var bits []bool
		err := errNotConnected
		if d.client != nil {
			switch r.Register {
			case "holding":
				regs, err = d.client.ReadRegisters(uint16(r.Start), uint16(r.Count), mb.HOLDING_REGISTER)
			case "input":
				regs, err = d.client.ReadRegisters(uint16(r.Start), uint16(r.Count), mb.INPUT_REGISTER)
			case "coil":
				bits, err = d.client.ReadCoils(uint16(r.Start), uint16(r.Count))
			case "discrete":
				bits, err = d.client.ReadDiscreteInputs(uint16(r.Start), uint16(r.Count))
			}
		}
		if err != nil {
			failed = true
			kind := "transport"
			if isException(err) {
				kind = "exception"
				if !d.warned[i] {
					d.warned[i] = true
					d.log.Error("device refused a read: check the addresses", "register", r.Register,
						"addresses", fmt.Sprintf("%d..%d", r.Start, r.Start+r.Count-1), "tags", d.tagNames(r), "err", err)
				}
			} else if d.client != nil {
				d.log.Warn("read failed; reconnecting", "register", r.Register, "address", r.Start, "err", err)
				d.close()
			}
			if !errors.Is(err, errNotConnected) {
				d.m.errors.WithLabelValues(d.cfg.Name, kind).Inc()
			}
			for _, s := range r.Tags {
				out = append(out, Reading{Tag: s.Tag, TS: ts, Quality: source.Bad, Err: fmt.Errorf("%s %d: %w", r.Register, r.Start+s.Offset, err)})
			}
			continue
		}
		for _, s := range r.Tags {
			t := d.cfg.Tags[s.Tag]
			rd := Reading{Tag: s.Tag, TS: ts}
			if bits != nil {
				if bits[s.Offset] {
					rd.Value.Num = 1
				}
			} else {
				rd.Value, rd.Err = Decode(regs[s.Offset:s.Offset+s.Count], t.Type, t.ByteOrder)
				if rd.Err != nil {
					rd.Quality = source.Bad
				}
			}
			out = append(out, rd)
		}
	}
	d.m.polls.WithLabelValues(d.cfg.Name).Inc()
	d.m.tags.WithLabelValues(d.cfg.Name).Add(float64(len(out)))
	if !failed {
		d.m.pollSeconds.WithLabelValues(d.cfg.Name).Observe(d.now().Sub(start).Seconds())
	}
	return out
}

func (d *Device) tagNames(r Request) string {
	names := make([]string, len(r.Tags))
	for i, s := range r.Tags {
		names[i] = d.cfg.Tags[s.Tag].Name
	}
	return strings.Join(names, ",")
}

// isException reports whether err is a Modbus exception response: the device is
// there and answered, but refused the request.
func isException(err error) bool {
	for _, e := range []error{mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue,
		mb.ErrServerDeviceFailure, mb.ErrMemoryParityError, mb.ErrServerDeviceBusy, mb.ErrGWPathUnavailable,
		mb.ErrGWTargetFailedToRespond} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
