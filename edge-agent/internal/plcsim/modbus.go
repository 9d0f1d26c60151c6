package plcsim

import (
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"

	modbusdec "takt.dev/edge-agent/internal/modbus"
)

// Register map: where each machine's values are, in holding registers (input
// registers mirror them) and coils. Addresses are 0-based protocol addresses.
//
//	0      uint16           state code (1 running, 2 changeover, 3 breakdown, 4 micro-stop, 5 starved, 6 planned stop)
//	1      uint16           reason code (breakdowns: 101..105)
//	2      uint16           total parts (wraps at 65536)
//	3      uint16           good parts (wraps)
//	4      uint16           scrap parts (wraps)
//	10-11  float32 ABCD     speed, parts/min
//	12-13  float32 CDAB     temperature, °C
//	14-15  uint32  CDAB     total parts, 32 bits
//	20-23  float64 ABCD     energy, kWh
//	30-35  string  (6 regs) lot
//	40-1039 uint16          filler: 1000 registers counting up (for benchmarks)
//	coil 0                  running

const registers = 1040

// registersOf lays out machine m as holding registers.
func registersOf(m Machine) []uint16 {
	r := make([]uint16, registers)
	r[0], r[1] = m.State, m.Reason
	r[2], r[3], r[4] = uint16(m.Total), uint16(m.Good), uint16(m.Scrap)
	copy(r[10:], modbusdec.Encode(float64(m.Speed), "float32", "ABCD"))
	copy(r[12:], modbusdec.Encode(float64(m.Temp), "float32", "CDAB"))
	copy(r[14:], modbusdec.Encode(float64(m.Total), "uint32", "CDAB"))
	copy(r[20:], modbusdec.Encode(m.EnergyKWh, "float64", "ABCD"))
	copy(r[30:], modbusdec.EncodeString(m.Lot, 6, "ABCD"))
	for i := 40; i < registers; i++ {
		r[i] = uint16(i) + uint16(m.Total)
	}
	return r
}

// handler serves one machine.
type handler struct {
	line *Line
	i    int

	mu     sync.Mutex
	at     time.Time // the simulated time cached was laid out at
	cached []uint16  // the machine's registers at that time
}

// registers returns the machine's register map, laid out again only when the line
// has moved on (a benchmark's agent reads the same map many times per step).
func (h *handler) registers() []uint16 {
	now := h.line.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cached == nil || !now.Equal(h.at) {
		h.cached, h.at = registersOf(h.line.Snapshot(h.i)), now
	}
	return h.cached
}

func (h *handler) regs(addr, qty uint16) ([]uint16, error) {
	if int(addr)+int(qty) > registers {
		return nil, mb.ErrIllegalDataAddress
	}
	return slices.Clone(h.registers()[addr : addr+qty]), nil
}

func (h *handler) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, mb.ErrIllegalFunction
	}
	return h.regs(req.Addr, req.Quantity)
}

func (h *handler) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	return h.regs(req.Addr, req.Quantity)
}

func (h *handler) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	if req.IsWrite || req.Addr+req.Quantity > 1 {
		return nil, mb.ErrIllegalDataAddress
	}
	return []bool{h.line.Snapshot(h.i).State == CodeRunning}, nil
}

func (h *handler) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

// ModbusServers serves every machine of a line on its own Modbus TCP port.
type ModbusServers struct {
	Addrs   []string // host:port of machine i
	servers []*mb.ModbusServer
}

// ServeModbus starts one server per machine on host, at the given ports (0: free ports).
func ServeModbus(l *Line, host string, ports []int) (*ModbusServers, error) {
	s := &ModbusServers{}
	for i := range l.Machines() {
		port := 0
		if i < len(ports) {
			port = ports[i]
		}
		if port == 0 {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				s.Stop()
				return nil, err
			}
			port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: 5 * time.Minute, MaxClients: 16,
			Logger: log.New(io.Discard, "", 0)}, &handler{line: l, i: i})
		if err != nil {
			s.Stop()
			return nil, err
		}
		if err := srv.Start(); err != nil {
			s.Stop()
			return nil, fmt.Errorf("modbus server for machine %d on %s: %w", i, addr, err)
		}
		s.servers = append(s.servers, srv)
		s.Addrs = append(s.Addrs, addr)
	}
	return s, nil
}

// Stop stops every server.
func (s *ModbusServers) Stop() {
	for _, srv := range s.servers {
		srv.Stop()
	}
}
