package testkit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"takt.dev/schemas"
)

// KafkaOptions shape a KafkaServer.
type KafkaOptions struct {
	// Partitions of each of Takt's topics (schemas.KafkaSamples, KafkaEvents,
	// KafkaDeadLetter, KafkaStatus), created at start. Default 4.
	Partitions int
	// Proxied puts a Proxy in front of the broker, and makes the broker advertise the
	// proxy's address, so that every client connection goes through it and Proxy.Cut
	// cuts them all.
	Proxied bool
	// TLS makes the broker speak TLS only, with this server configuration.
	TLS *tls.Config
	// Users turns SASL on: only these users get in (each a superuser).
	Users []KafkaUser
	// TopicPrefixes: Takt's topics are also created under each of these prefixes.
	TopicPrefixes []string
}

// KafkaUser is a SASL user of a KafkaServer.
type KafkaUser struct {
	Mechanism      string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Name, Password string
}

// KafkaServer is an in-process Kafka-protocol broker (kfake) whose state lives in a
// data directory, so that Stop and Start keep topics, records and committed offsets.
type KafkaServer struct {
	Dir   string
	Port  int    // the broker's own port
	Proxy *Proxy // non-nil when Proxied

	opts    KafkaOptions
	mu      sync.Mutex
	cluster *kfake.Cluster
}

// StartKafka starts a broker with its data in dir.
func StartKafka(dir string, opts KafkaOptions) (*KafkaServer, error) {
	if opts.Partitions <= 0 {
		opts.Partitions = 4
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &KafkaServer{Dir: dir, opts: opts}
	// FreePort's port is free when it answers, not when the broker binds it: another
	// process (a parallel test package) may take it in between, so a port found taken
	// is given up for another one.
	for attempt := 0; ; attempt++ {
		var err error
		if s.Port, err = FreePort(); err != nil {
			return nil, err
		}
		if opts.Proxied {
			if s.Proxy, err = NewProxy("127.0.0.1:" + strconv.Itoa(s.Port)); err != nil {
				return nil, err
			}
		}
		err = s.Start()
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || attempt == 4 {
			return s, err
		}
		if s.Proxy != nil {
			s.Proxy.Close()
			s.Proxy = nil
		}
	}
}

// Brokers returns the bootstrap address clients should use.
func (s *KafkaServer) Brokers() []string {
	if s.Proxy != nil {
		return []string{s.Proxy.Addr()}
	}
	return []string{"127.0.0.1:" + strconv.Itoa(s.Port)}
}

// Start starts the broker (again), reloading its data directory.
func (s *KafkaServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cluster != nil {
		return fmt.Errorf("kafka: already running")
	}
	opts := []kfake.Opt{
		kfake.Ports(s.Port),
		kfake.DataDir(s.Dir),
		kfake.SeedTopics(int32(s.opts.Partitions), s.topics()...),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(s.opts.Partitions),
	}
	if s.opts.TLS != nil {
		opts = append(opts, kfake.TLS(s.opts.TLS))
	}
	if len(s.opts.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range s.opts.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	if s.Proxy != nil {
		advertised := s.Proxy.Addr()
		opts = append(opts, kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			return advertisingListener{l, advertised}, nil
		}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start kafka: %w", err)
	}
	s.cluster = c
	return nil
}

// Stop shuts the broker down, saving its state to the data directory.
func (s *KafkaServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cluster != nil {
		s.cluster.Close()
		s.cluster = nil
	}
}

// Close stops the broker and its proxy and removes the data directory.
func (s *KafkaServer) Close() error {
	s.Stop()
	if s.Proxy != nil {
		s.Proxy.Close()
	}
	return os.RemoveAll(s.Dir)
}

// advertisingListener reports another address as its own, which kfake advertises to
// clients in metadata responses.
type advertisingListener struct {
	net.Listener
	addr string
}

func (l advertisingListener) Addr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", l.addr)
	if err != nil {
		return l.Listener.Addr()
	}
	return a
}

// SecureKafka starts a broker for t alone that speaks TLS only (a certificate of a
// throwaway authority, whose PEM file it returns) and lets in only users.
func SecureKafka(t testing.TB, users ...KafkaUser) (*KafkaServer, string) {
	t.Helper()
	dir := t.TempDir()
	pki, err := NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := StartKafka(filepath.Join(dir, "kafka"), KafkaOptions{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, Users: users})
	if err != nil {
		t.Fatalf("testkit: secure kafka: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k, pki.CA
}

// topics are Takt's topics, and the same under every prefix of the options.
func (s *KafkaServer) topics() []string {
	base := []string{schemas.KafkaSamples, schemas.KafkaEvents, schemas.KafkaDeadLetter, schemas.KafkaStatus}
	out := append([]string{}, base...)
	for _, p := range s.opts.TopicPrefixes {
		for _, t := range base {
			out = append(out, p+t)
		}
	}
	return out
}
