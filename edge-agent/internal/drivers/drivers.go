// Package drivers links every source driver into the agent: each registers itself
// (source.Register) from its init function. A new driver is a folder of its own
// and a line here.
package drivers

import (
	_ "takt.dev/edge-agent/internal/modbus" // modbus: Modbus TCP, RTU over TCP, serial RTU
	_ "takt.dev/edge-agent/internal/opcua"  // opcua: OPC UA subscriptions and polling
)
