// Package testkit starts the real servers Takt's integration tests (and the demo)
// talk to, privately, on free loopback ports, and lets a test stop, kill and restart
// them to inject faults:
//
//   - PostgreSQL: a private cluster made with initdb in a temporary directory and run
//     with postgres (as the postgres user when the tests run as root); or the server
//     named by TAKT_TEST_DATABASE_URL. Each test gets a fresh database cloned from a
//     template with Takt's migrations applied.
//   - Mosquitto: a private broker with persistence, so a restart keeps sessions and
//     queued messages, and with the queue limits that drop QoS 1 messages raised.
//   - Kafka: an in-process kfake cluster with a data directory, so a restart keeps
//     topics, records and committed offsets; segmentio/kafka-go producers and consumer
//     groups work against it. Optionally behind a Proxy, so a test can cut the network.
//
// Servers are shared by the tests of one package (one test binary) and removed when
// it exits: use Main from TestMain. Child processes are also tied to the test binary
// with a parent-death signal, so a test binary killed by a timeout leaves no server
// running.
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		db := testkit.NewDatabase(t) // fresh, migrated
//		pg := testkit.Postgres(t)    // the server, to Stop/Start/Kill it
//		...
//	}
package testkit
