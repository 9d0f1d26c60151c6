// Package ingest moves envelopes from MQTT to Kafka (the bridge: it acknowledges an
// MQTT message only after Kafka acknowledged the write) and from Kafka to
// PostgreSQL (the sink: rows and Kafka positions committed in one transaction,
// duplicates dropped by (agent, seq)). Not built yet: see the ingest issue.
package ingest
