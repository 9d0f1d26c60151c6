// Package schemas is Takt's wire contract: the types every other module and every
// outside consumer of Takt's MQTT and Kafka topics rely on.
//
// A Sample is one value of one tag of one piece of equipment at one instant, with the
// agent that read it and that agent's sequence number. (Agent, Seq) identifies a sample
// for deduplication: Seq increases by one for every sample an agent produces and
// survives the agent's restarts. Nothing downstream may assume that samples arrive in
// Seq order (an agent replays its disk backlog while live data flows).
//
// An Envelope carries many samples of one equipment. Its JSON form is the message body
// on MQTT and the record value on Kafka, described for other languages by the JSON
// Schema in envelope.schema.json. Decode turns bytes into a validated Envelope or
// returns a *DecodeError whose Reason says which dead-letter bucket the bytes belong
// in; Encode validates and marshals.
//
// Topic names live here too: MQTT topics follow the unified namespace
// takt/v1/{tenant}/{site}/{area}/{line}/{equipment} (see Path), and the Kafka topics
// are a small fixed set keyed by equipment (see KafkaSamples, KafkaEvents,
// KafkaDeadLetter and Path.Key).
//
// This package imports only the standard library, so any module can depend on it.
package schemas
