package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"takt.dev/schemas"
)

// lifeline records, in the buffer directory, how far this run of the agent got, by
// the sources' clock, so that the next run can say where knowledge of the machines
// ended after a crash or a power loss (a last will carries the broker's time, which
// may be far from the sources' and late). The file is replaced atomically every
// heartbeat and before any state sample is buffered, so Until is never before a
// state the run reported; it is not fsynced, so after a power loss it may be one
// heartbeat short, which only makes the unknown stretch longer, never a guess.
type lifeline struct {
	path        string
	incarnation string
	now         func() time.Time

	writing   sync.Mutex // one writer of the file at a time
	mu        sync.Mutex
	lastTS    time.Time // latest reading, by the sources' clock
	lastLocal time.Time // when it was read, by ours
	lastState time.Time // latest state sample
}

const lifelineFile = "lifeline.json"

// previousRun reads what the run before this one left, or nil.
func previousRun(dir string) (*schemas.PreviousRun, error) {
	b, err := os.ReadFile(filepath.Join(dir, lifelineFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p schemas.PreviousRun
	if err := json.Unmarshal(b, &p); err != nil || p.Incarnation == "" || p.Until.IsZero() {
		return nil, nil // torn by a power loss: nothing to say
	}
	return &p, nil
}

// observe notes a good reading's time (and whether it is a state) before it is
// buffered. The newest source time seen sets the sources' clock (a value notified
// again keeps the time it changed at, so arrival order says nothing); a failed
// read's time is the agent's guess and sets nothing.
func (l *lifeline) observe(ts time.Time, state bool) {
	l.mu.Lock()
	if ts.After(l.lastTS) {
		l.lastTS, l.lastLocal = ts, l.now()
	}
	if state && ts.After(l.lastState) {
		l.lastState = ts
	}
	l.mu.Unlock()
}

// until is how far this run got by the sources' clock: the latest reading moved on
// by the time since, and always after the latest state.
func (l *lifeline) until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.now()
	if !l.lastTS.IsZero() {
		u = l.lastTS.Add(l.now().Sub(l.lastLocal))
	}
	if !u.After(l.lastState) {
		u = l.lastState.Add(time.Microsecond) // the database keeps microseconds
	}
	return u.UTC().Truncate(time.Microsecond).Add(time.Microsecond)
}

// write replaces the file with this run's progress.
func (l *lifeline) write() error {
	l.writing.Lock()
	defer l.writing.Unlock()
	b, _ := json.Marshal(schemas.PreviousRun{Incarnation: l.incarnation, Until: l.until()})
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("lifeline: %w", err)
	}
	return os.Rename(tmp, l.path)
}
