package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MosquittoServer is a private Mosquitto broker on a fixed loopback port, with
// persistence in its directory so that a Stop/Start keeps persistent sessions and the
// QoS 1 messages queued for them.
type MosquittoServer struct {
	Dir     string
	Port    int
	TLSPort int  // a second listener with TLS and client certificates required, when started with a PKI
	PKI     *PKI // the certificates of the TLS listener

	bin string
	serverProc
}

// mosquittoConf raises the limits at which Mosquitto drops QoS 1 messages for slow
// or absent subscribers (max_queued_messages defaults to 1000): a broker that drops
// is not one Takt's delivery promise can run on. Operators need the same settings.
const mosquittoConf = `listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval %d
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
log_dest file %s/mosquitto.log
log_type error
log_type warning
log_type notice
%s
`

// StartMosquitto writes a broker configuration in dir and starts the broker.
func StartMosquitto(dir string) (*MosquittoServer, error) {
	return startMosquitto(dir, false, time.Second)
}

// StartMosquittoAutosave starts a broker that saves its persistence file only every
// autosave (and on a clean stop or Save): a Kill loses what it received since.
func StartMosquittoAutosave(dir string, autosave time.Duration) (*MosquittoServer, error) {
	return startMosquitto(dir, false, autosave)
}

// StartMosquittoTLS starts a broker that also listens with TLS on TLSPort, requiring
// client certificates, with a throwaway PKI in dir.
func StartMosquittoTLS(dir string) (*MosquittoServer, error) {
	return startMosquitto(dir, true, time.Second)
}

// newMosquitto finds the broker, a free port and makes dir.
func newMosquitto(dir string) (*MosquittoServer, error) {
	bin, err := findProgram("mosquitto", "/usr/sbin/mosquitto")
	if err != nil {
		return nil, err
	}
	s := &MosquittoServer{Dir: dir, bin: bin}
	if s.Port, err = FreePort(); err != nil {
		return nil, err
	}
	return s, os.MkdirAll(dir, 0o755)
}

func startMosquitto(dir string, withTLS bool, autosave time.Duration) (*MosquittoServer, error) {
	s, err := newMosquitto(dir)
	if err != nil {
		return nil, err
	}
	userLine := ""
	if os.Geteuid() == 0 {
		// As root, Mosquitto switches to user "mosquitto", which cannot write our dir.
		userLine = "user root"
	}
	conf := fmt.Sprintf(mosquittoConf, s.Port, dir, max(1, int(autosave/time.Second)), dir, userLine)
	if withTLS {
		if s.PKI, err = NewPKI(filepath.Join(dir, "pki")); err != nil {
			return nil, err
		}
		if s.TLSPort, err = FreePort(); err != nil {
			return nil, err
		}
		conf += fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
			s.TLSPort, s.PKI.CA, s.PKI.ServerCert, s.PKI.ServerKey)
	}
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return s, s.Start()
}

// StartMosquittoConfig starts a broker with conf, a whole configuration in which
// {{port}} is a free port (the one the test connects to, Port) and {{dir}} the
// broker's directory; logging, and the user to run as when root, are added.
func StartMosquittoConfig(dir, conf string) (*MosquittoServer, error) {
	s, err := newMosquitto(dir)
	if err != nil {
		return nil, err
	}
	conf = strings.NewReplacer("{{port}}", strconv.Itoa(s.Port), "{{dir}}", dir).Replace(conf)
	conf += fmt.Sprintf("\nlog_dest file %s/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n", dir)
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return s, s.Start()
}

// Addr returns host:port.
func (s *MosquittoServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL returns the broker URL in paho's form, tcp://127.0.0.1:port.
func (s *MosquittoServer) URL() string { return "tcp://" + s.Addr() }

// Start starts the broker (again) and waits until it accepts connections.
func (s *MosquittoServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("mosquitto: already running")
	}
	cmd := exec.Command(s.bin, "-c", filepath.Join(s.Dir, "mosquitto.conf"))
	out, err := os.OpenFile(filepath.Join(s.Dir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := s.launch(cmd, syscall.SIGKILL); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := s.done
	err = waitFor(context.Background(), 20*time.Second, "mosquitto on "+s.Addr(), func(ctx context.Context) error {
		select {
		case <-done:
			return fmt.Errorf("mosquitto exited; see %s/mosquitto.log and %s/stderr.log", s.Dir, s.Dir)
		default:
		}
		return dialable(ctx, s.Addr())
	})
	if err != nil {
		s.abort()
	}
	return err
}

// Stop shuts the broker down cleanly; it saves its persistence file first.
func (s *MosquittoServer) Stop() error { return s.signal(syscall.SIGTERM, 30*time.Second) }

// Save makes the broker write its persistence file now (SIGUSR1) and waits until
// the file is rewritten.
func (s *MosquittoServer) Save() error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("mosquitto: not running")
	}
	db := filepath.Join(s.Dir, "mosquitto.db")
	before := time.Time{}
	if st, err := os.Stat(db); err == nil {
		before = st.ModTime()
	}
	time.Sleep(10 * time.Millisecond) // a rewrite gets a later modification time
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	return waitFor(context.Background(), 10*time.Second, "mosquitto saving "+db, func(context.Context) error {
		st, err := os.Stat(db)
		if err != nil {
			return err
		}
		if !st.ModTime().After(before) {
			return errors.New("not rewritten yet")
		}
		return nil
	})
}

// Kill crashes the broker: what it had not saved (autosave is every second unless
// started otherwise) is lost.
func (s *MosquittoServer) Kill() error { return s.signal(syscall.SIGKILL, 30*time.Second) }

// Close stops the broker and removes its directory.
func (s *MosquittoServer) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}
