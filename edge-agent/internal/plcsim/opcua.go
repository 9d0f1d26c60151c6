package plcsim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// NamespaceURI is the namespace of the simulated line's OPC UA nodes.
const NamespaceURI = "urn:takt:plcsim"

// OPCUATags are the variables each machine has, as ns=<NamespaceURI>;s=<machine>.<tag>.
var OPCUATags = []string{"State", "Reason", "TotalCount", "GoodCount", "ScrapCount", "Speed", "Temperature", "EnergyKWh", "Lot"}

func opcuaValue(m Machine, tag string) any {
	switch tag {
	case "State":
		return m.State
	case "Reason":
		return m.Reason
	case "TotalCount":
		return m.Total
	case "GoodCount":
		return m.Good
	case "ScrapCount":
		return m.Scrap
	case "Speed":
		return m.Speed
	case "Temperature":
		return m.Temp
	case "EnergyKWh":
		return m.EnergyKWh
	case "Lot":
		return m.Lot
	}
	return nil
}

// OPCUAServer serves a line over OPC UA (security None, anonymous), and notifies
// subscribers of every variable each time the line advances.
type OPCUAServer struct {
	Endpoint string
	srv      *server.Server
	nodes    []*ua.NodeID
	stop     chan struct{}
	wg       sync.WaitGroup
}

// ServeOPCUA starts the server on host:port; notify is how often monitored items
// get the current values.
func ServeOPCUA(l *Line, host string, port int, notify time.Duration) (*OPCUAServer, error) {
	s := server.New(
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EndPoint(host, port),
		server.ServerName("takt plcsim"),
		server.SetLogger(slog.New(slog.DiscardHandler)),
	)
	root, err := s.Namespace(0)
	if err != nil {
		return nil, err
	}
	ns := server.NewNodeNameSpace(s, NamespaceURI)
	root.Objects().AddRef(ns.Objects(), id.HasComponent, true)
	o := &OPCUAServer{Endpoint: fmt.Sprintf("opc.tcp://%s:%d", host, port), srv: s, stop: make(chan struct{})}
	for i := range l.Machines() {
		name := l.Snapshot(i).Name
		for _, tag := range OPCUATags {
			nid := ua.NewStringNodeID(ns.ID(), name+"."+tag)
			n := server.NewVariableNode(nid, name+"."+tag, func() *ua.DataValue {
				m := l.Snapshot(i)
				// The source timestamp is when the value changed, in simulated time,
				// as a PLC reports it; the server timestamp is when it was read, by the
				// simulated PLC's clock.
				src := l.Now()
				switch tag {
				case "State", "Reason":
					src = m.StateSince
				case "TotalCount", "GoodCount", "ScrapCount":
					src = m.CountSince
				}
				return &ua.DataValue{
					EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
					Value:        ua.MustVariant(opcuaValue(m, tag)), SourceTimestamp: src, ServerTimestamp: l.Now(),
				}
			})
			ns.AddNode(n)
			ns.Objects().AddRef(n, id.HasComponent, true)
			o.nodes = append(o.nodes, nid)
		}
	}
	if err := s.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("opc ua server on %s:%d: %w", host, port, err)
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		tick := time.NewTicker(notify)
		defer tick.Stop()
		for {
			select {
			case <-o.stop:
				return
			case <-tick.C:
				for _, n := range o.nodes {
					s.ChangeNotification(n)
				}
			}
		}
	}()
	return o, nil
}

// Stop closes the server and its connections.
func (o *OPCUAServer) Stop() {
	close(o.stop)
	o.wg.Wait()
	o.srv.Close()
}
