// Package edgeagent is the program a controls engineer installs on a line gateway:
// it polls Modbus devices and reads or subscribes OPC UA servers, maps tags to
// samples (schemas.Sample), batches them per equipment into envelopes, and publishes
// them at MQTT QoS 1, keeping each envelope in a disk buffer until the broker's
// PUBACK. Not built yet: see the edge-agent issue.
package edgeagent
