// Package plcsim simulates the PLCs of a packaging line for tests, benchmarks and the
// demo: machines that run at an ideal cycle time with speed losses, micro-stops,
// breakdowns with reason codes, changeovers, planned breaks, good and scrap counters
// that wrap at 16 bits, and a few analogue measurements. The simulation advances in
// fixed steps and draws from one seeded generator, so a seed and a number of steps
// always give the same line.
//
// Each machine is served as a Modbus TCP server with the register map in modbus.go.
package plcsim

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// State codes as the simulated PLCs report them, and what they mean.
const (
	CodeRunning     = 1
	CodeChangeover  = 2
	CodeBreakdown   = 3
	CodeMicroStop   = 4
	CodeStarved     = 5
	CodePlannedStop = 6
)

// Breakdown reason codes.
var BreakdownReasons = []uint16{101, 102, 103, 104, 105} // jam, motor, sensor, pneumatics, electrical

// Segment is one stretch of a scripted machine: a state (and reason) for a
// duration, making a part every Cycle while it lasts (0: no parts).
type Segment struct {
	For    time.Duration `json:"for"`
	State  uint16        `json:"state"`
	Reason uint16        `json:"reason"`
	Cycle  time.Duration `json:"cycle"`
}

// Machine is one simulated machine. Read its fields through Line.Snapshot.
type Machine struct {
	Name       string
	IdealCycle time.Duration // seconds per part at full speed

	State      uint16
	Reason     uint16
	Total      uint32 // parts, all time (the 16-bit registers wrap)
	Good       uint32
	Scrap      uint32
	Speed      float32 // parts per minute, momentary
	Temp       float32 // °C
	EnergyKWh  float64
	Lot        string
	StateSince time.Time     // simulated time of the last state change (an OPC UA source timestamp)
	CountSince time.Time     // simulated time of the last part
	stateLeft  time.Duration // time left in a non-running state
	partClock  time.Duration // time into the current part
	cycle      time.Duration // current cycle, ideal plus speed loss
	sinceSetup time.Duration
}

// Line is a set of machines advanced together.
type Line struct {
	mu       sync.Mutex
	rng      *rand.Rand
	step     time.Duration
	elapsed  time.Duration
	start    time.Time
	script   []Segment
	machines []*Machine
}

// Config shapes a simulated line.
type Config struct {
	Seed     uint64
	Machines int           // default 3
	Step     time.Duration // simulation step; default 100ms
	// Start is the simulated time at the start (default: the real time then).
	Start time.Time
	// Script, when given, replaces the random behaviour: every machine follows it,
	// making a part every segment's Cycle and scrapping every 50th, and after its end
	// reports state 7 (not scheduled).
	Script []Segment
}

// CodeNotScheduled is what a scripted machine reports after its script.
const CodeNotScheduled = 7

// NewLine builds a line of machines with ideal cycles between 0.4 s and 0.6 s.
func NewLine(cfg Config) *Line {
	if cfg.Machines <= 0 {
		cfg.Machines = 3
	}
	if cfg.Step <= 0 {
		cfg.Step = 100 * time.Millisecond
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	l := &Line{rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)), step: cfg.Step, start: cfg.Start, script: cfg.Script}
	names := []string{"filler", "capper", "labeler", "packer", "palletizer", "wrapper"}
	for i := range cfg.Machines {
		m := &Machine{
			Name:       names[i%len(names)] + "-" + strconv.Itoa(1+i/len(names)),
			IdealCycle: time.Duration(400+100*(i%3)) * time.Millisecond,
			State:      CodeRunning, Temp: 40, Lot: "LOT-0001",
		}
		m.cycle = m.IdealCycle
		m.StateSince, m.CountSince = cfg.Start, cfg.Start
		l.machines = append(l.machines, m)
	}
	return l
}

// Machines returns how many machines the line has.
func (l *Line) Machines() int { return len(l.machines) }

// Snapshot returns a copy of machine i.
func (l *Line) Snapshot(i int) Machine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return *l.machines[i]
}

// Advance moves the line forward by d, in whole steps.
func (l *Line) Advance(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ; d >= l.step; d -= l.step {
		for _, m := range l.machines {
			before, count := m.State, m.Total
			if l.script != nil {
				l.stepScripted(m)
			} else {
				l.stepMachine(m)
			}
			if m.State != before {
				m.StateSince = l.start.Add(l.elapsed)
			}
			if m.Total != count {
				m.CountSince = l.start.Add(l.elapsed + l.step)
			}
		}
		l.elapsed += l.step
	}
}

// Run advances the line by step every tick until ctx ends (ten times faster than
// real time with a tick of 10 ms and a step of 100 ms, as tests and benchmarks run it).
func (l *Line) Run(ctx context.Context, tick, step time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Advance(step)
		}
	}
}

// Now is the simulated time.
func (l *Line) Now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.start.Add(l.elapsed)
}

// stepScripted moves a scripted machine through [elapsed, elapsed+step).
func (l *Line) stepScripted(m *Machine) {
	at := l.elapsed
	seg := Segment{State: CodeNotScheduled}
	for _, s := range l.script {
		if at < s.For {
			seg = s
			break
		}
		at -= s.For
	}
	m.State, m.Reason = seg.State, seg.Reason
	m.Speed = 0
	if seg.Cycle <= 0 {
		return
	}
	m.Speed = float32(60 / seg.Cycle.Seconds())
	// Parts whose cycle ends within this step: at multiples of Cycle from the segment start.
	made := int64((at+l.step)/seg.Cycle) - int64(at/seg.Cycle)
	for range made {
		m.Total++
		if m.Total%50 == 0 {
			m.Scrap++
		} else {
			m.Good++
		}
	}
}

// chance is true with probability perHour events per hour, for one step.
func (l *Line) chance(perHour float64) bool {
	return l.rng.Float64() < perHour*l.step.Hours()
}

func (l *Line) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(l.rng.Int64N(int64(hi-lo)))
}

func (l *Line) stepMachine(m *Machine) {
	dt := l.step
	m.sinceSetup += dt
	// Planned break: the first 10 minutes of every second hour.
	inBreak := l.elapsed%(2*time.Hour) < 10*time.Minute && l.elapsed >= 2*time.Hour
	switch {
	case inBreak:
		m.State, m.Reason, m.stateLeft = CodePlannedStop, 0, 0
	case m.stateLeft > 0:
		m.stateLeft -= dt
		if m.stateLeft <= 0 {
			m.State, m.Reason = CodeRunning, 0
		}
	case m.State == CodePlannedStop:
		m.State = CodeRunning
	case m.sinceSetup > 45*time.Minute && l.chance(4):
		m.State, m.Reason, m.stateLeft, m.sinceSetup = CodeChangeover, 0, l.between(3*time.Minute, 8*time.Minute), 0
		m.Lot = nextLot(m.Lot)
	case l.chance(0.5):
		m.State, m.Reason = CodeBreakdown, BreakdownReasons[l.rng.IntN(len(BreakdownReasons))]
		m.stateLeft = l.between(2*time.Minute, 15*time.Minute)
	case l.chance(20):
		m.State, m.Reason, m.stateLeft = CodeMicroStop, 0, l.between(5*time.Second, 90*time.Second)
	case l.chance(6):
		m.State, m.Reason, m.stateLeft = CodeStarved, 0, l.between(20*time.Second, 3*time.Minute)
	}
	if m.State == CodeRunning {
		m.partClock += dt
		for m.partClock >= m.cycle {
			m.partClock -= m.cycle
			m.Total++
			if l.rng.Float64() < 0.02 {
				m.Scrap++
			} else {
				m.Good++
			}
			// Speed loss: each cycle runs 0 to 15% slower than ideal.
			m.cycle = time.Duration(float64(m.IdealCycle) * (1 + 0.15*l.rng.Float64()))
		}
		m.Speed = float32(60 / m.cycle.Seconds())
		m.Temp += float32((70-float64(m.Temp))*0.01 + l.rng.NormFloat64()*0.1)
		m.EnergyKWh += 7.5 * dt.Hours()
	} else {
		m.Speed = 0
		m.Temp += float32((25-float64(m.Temp))*0.005 + l.rng.NormFloat64()*0.05)
		m.EnergyKWh += 0.8 * dt.Hours()
	}
	m.Temp = float32(math.Round(float64(m.Temp)*100) / 100)
}

func nextLot(lot string) string {
	n := 0
	for _, c := range lot[len(lot)-4:] {
		n = n*10 + int(c-'0')
	}
	n = (n + 1) % 10000
	return lot[:len(lot)-4] + string([]byte{byte('0' + n/1000), byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
}
