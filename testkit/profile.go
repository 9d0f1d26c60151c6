package testkit

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
)

// CPUProfileTop fetches a CPU profile from url (a /debug/pprof/profile?seconds=N of
// a process run with TAKT_PPROF=1), keeps it at path, and returns `go tool pprof
// -top -cum` of it against binary, or what went wrong: the summary benchmarks print
// of where a process's time goes.
func CPUProfileTop(url, binary, path string) string {
	return profileTop(url, binary, path, "-cum")
}

// HeapProfileTop is CPUProfileTop for a heap profile (a /debug/pprof/heap): where
// the memory in use at that moment was allocated, largest first.
func HeapProfileTop(url, binary, path string) string {
	return profileTop(url, binary, path, "-sample_index=inuse_space")
}

func profileTop(url, binary, path, order string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err.Error()
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("fetching the profile: %s %v", resp.Status, err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", order, "-nodecount=40", binary, path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return string(out)
}
