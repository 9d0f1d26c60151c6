// Package kafkalink is how every Takt service reaches Kafka: the brokers, TLS
// (with a private authority and a client certificate for mutual TLS) and SASL
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), as managed Kafka services (MSK, Confluent
// Cloud, Aiven) and secured clusters require, in one configuration block that
// every service reads the same way:
//
//	kafka:
//	  brokers: [b-1.kafka.internal:9096]
//	  tls: {enabled: true, ca_file: /etc/takt/kafka-ca.pem}
//	  sasl: {mechanism: SCRAM-SHA-512, username: takt-ingest, password: ${KAFKA_PASSWORD}}
package kafkalink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"takt.dev/servicekit"
)

// Link is the kafka: block of a service's configuration.
type Link struct {
	Brokers []string `yaml:"brokers"`
	TLS     struct {
		Enabled  bool   `yaml:"enabled"`
		CAFile   string `yaml:"ca_file"`   // the brokers' authority (PEM); the system's when empty
		CertFile string `yaml:"cert_file"` // mutual TLS: the client's certificate and key (PEM)
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	SASL struct {
		Mechanism string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none
		Username  string `yaml:"username"`
		Password  string `yaml:"password"` // better ${KAFKA_PASSWORD} or ${file:...}
	} `yaml:"sasl"`
	// TopicPrefix goes in front of every topic name (staging.takt.samples.v1), so
	// that several environments share one cluster. Empty: none.
	TopicPrefix string `yaml:"topic_prefix"`
}

// Topic is name with the prefix.
func (l Link) Topic(name string) string { return l.TopicPrefix + name }

// Validate reports the first setting that cannot work, by its path.
func (l Link) Validate() error {
	if len(l.Brokers) == 0 {
		return errors.New("kafka.brokers: missing")
	}
	if err := CheckPrefix(l.TopicPrefix); err != nil {
		return err
	}
	if _, err := l.tls(); err != nil {
		return err
	}
	_, err := l.mechanism()
	return err
}

func (l Link) tls() (*tls.Config, error) {
	if !l.TLS.Enabled {
		if l.TLS.CAFile != "" || l.TLS.CertFile != "" {
			return nil, errors.New("kafka.tls: files given but enabled is false")
		}
		return nil, nil
	}
	tc, err := servicekit.TLSConfig("kafka.tls.", l.TLS.CAFile, l.TLS.CertFile, l.TLS.KeyFile)
	if tc == nil && err == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12} // the system's authorities
	}
	return tc, err
}

func (l Link) mechanism() (sasl.Mechanism, error) {
	s := l.SASL
	if s.Mechanism == "" {
		if s.Username != "" || s.Password != "" {
			return nil, errors.New("kafka.sasl: username or password given without a mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if s.Username == "" {
		return nil, fmt.Errorf("kafka.sasl.username: missing for %s", s.Mechanism)
	}
	switch s.Mechanism {
	case "PLAIN":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// Transport is for writers and clients (kafka.Writer.Transport, kafka.Client).
func (l Link) Transport() (*kafka.Transport, error) {
	tc, m, err := l.Parts()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{TLS: tc, SASL: m, DialTimeout: 10 * time.Second}, nil
}

// Dialer is for readers and consumer groups.
func (l Link) Dialer() (*kafka.Dialer, error) {
	tc, m, err := l.Parts()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tc, SASLMechanism: m}, nil
}

// Parts returns the TLS configuration and the SASL mechanism, each nil when off,
// for code that builds its own kafka-go dialers and transports.
func (l Link) Parts() (*tls.Config, sasl.Mechanism, error) {
	tc, err := l.tls()
	if err != nil {
		return nil, nil, err
	}
	m, err := l.mechanism()
	return tc, m, err
}

// Hint is what to check when a connection fails, for error messages: brokers that
// refuse a login or a certificate often just hang up.
func (l Link) Hint() string {
	switch {
	case l.SASL.Mechanism != "" && l.TLS.Enabled:
		return " (check kafka.sasl: the " + l.SASL.Mechanism + " user and password, and kafka.tls: the brokers' authority)"
	case l.SASL.Mechanism != "":
		return " (check kafka.sasl: the " + l.SASL.Mechanism + " user and password)"
	case l.TLS.Enabled:
		return " (check kafka.tls: the brokers' authority and the client certificate)"
	}
	return ""
}

// CheckPrefix checks a topic prefix: Kafka's topic characters, at most 100.
func CheckPrefix(p string) error {
	if len(p) > 100 {
		return fmt.Errorf("kafka.topic_prefix %q: at most 100 characters", p)
	}
	for i, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("kafka.topic_prefix %q: character %q at %d: Kafka topics take A-Z a-z 0-9 . _ -", p, r, i)
		}
	}
	return nil
}
