// Command takt-package builds Takt's Debian packages with nfpm (as a library):
// takt-agent (the edge agent, its unit, a configuration to edit, its user and state
// directory) and takt-services (takt-ingest, takt-aggregator, takt-api, takt-migrate
// and takt-loadgen, their units, the daily partitions timer, configurations, an
// environment file and their user), for each architecture asked, cross-built as
// static pure-Go binaries.
//
//	takt-package [-version 0.1.0] [-arch amd64,arm64,armhf] [-out dist]
//
//	takt-package image [-version 0.1.0] [-arch amd64,arm64,armhf] [-out dist/takt-services.oci]
//
// The second form writes the services' container image (see image.go) as an OCI
// image layout, one image per architecture under one index, with no container daemon.
//
// Run it from anywhere in the repository (make package and make image do).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-package:", err)
		os.Exit(1)
	}
}

// goArch is how Go names each Debian architecture Takt is packaged for.
var goArch = map[string][]string{
	"amd64": {"GOARCH=amd64"},
	"arm64": {"GOARCH=arm64"},
	"armhf": {"GOARCH=arm", "GOARM=7"},
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "image" {
		return runImage(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("takt-package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "0.1.0", "the packages' version")
	archs := fs.String("arch", "amd64,arm64,armhf", "Debian architectures, comma-separated: amd64, arm64, armhf")
	out := fs.String("out", "dist", "where the .deb files go")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, arch := range strings.Split(*archs, ",") {
		bin, err := os.MkdirTemp("", "takt-package-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(bin)
		fmt.Fprintf(stderr, "takt-package: building for %s\n", arch)
		if err := crossBuild(root, arch, *version, bin, nil, append([]string{"./edge-agent/cmd/takt-agent"}, servicePackages...)...); err != nil {
			return err
		}
		units, err := unitsFor(root, bin)
		if err != nil {
			return err
		}
		for _, pkg := range []*nfpm.Info{agentPackage(root, bin, units), servicesPackage(root, bin, units)} {
			pkg.Arch, pkg.Version = arch, *version
			path := filepath.Join(*out, fmt.Sprintf("%s_%s_%s.deb", pkg.Name, *version, arch))
			if err := write(pkg, path); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			fmt.Fprintln(stdout, path)
		}
	}
	return nil
}

// servicePackages are the Go packages of the services' binaries.
var servicePackages = []string{"./ingest/cmd/takt-ingest", "./aggregator/cmd/takt-aggregator", "./api/cmd/takt-api", "./migrations/cmd/takt-migrate",
	"./ingest/cmd/takt-loadgen"}

// crossBuild builds pkgs for the Debian architecture arch as static pure-Go
// binaries into dir, with the release and the repository's revision stamped in.
func crossBuild(root, arch, version, dir string, tags []string, pkgs ...string) error {
	env, ok := goArch[arch]
	if !ok {
		return fmt.Errorf("-arch %q: want amd64, arm64 or armhf", arch)
	}
	ldflags := "-s -w -X takt.dev/servicekit.Release=" + version
	if rev, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		ldflags += " -X takt.dev/servicekit.Revision=" + strings.TrimSpace(string(rev))
	}
	args := []string{"build", "-trimpath", "-ldflags=" + ldflags}
	if len(tags) > 0 {
		args = append(args, "-tags="+strings.Join(tags, ","))
	}
	build := exec.Command("go", append(append(args, "-o", dir+"/"), pkgs...)...)
	build.Dir = root
	build.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK="+filepath.Join(root, "go.work")), env...)
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %v\n%s", arch, err, b)
	}
	return nil
}

// repoRoot is the directory of go.work above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory: run takt-package inside the repository")
		}
		dir = parent
	}
}

// unitsFor writes the systemd units as packaged (binaries in /usr/bin) into dir.
func unitsFor(root, dir string) (string, error) {
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(root, "deploy", "systemd")
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return "", err
		}
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/", "/usr/bin/"))
		if err := os.WriteFile(filepath.Join(units, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	return units, nil
}

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
}

func config(src, dst string) *files.Content {
	return &files.Content{Source: src, Destination: dst, Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o640, Owner: "root", Group: "root"}}
}

func dir(dst string, mode os.FileMode) *files.Content {
	return &files.Content{Destination: dst, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
}

func common(name, description string) *nfpm.Info {
	return &nfpm.Info{Name: name, Platform: "linux", Maintainer: "Takt <takt@localhost>", Vendor: "Takt",
		Description: description, Section: "net", Priority: "optional", License: "Proprietary"}
}

func agentPackage(root, bin, units string) *nfpm.Info {
	p := common("takt-agent", "Takt edge agent: reads PLCs over OPC UA and Modbus, buffers on disk, publishes over MQTT")
	p.Contents = files.Contents{
		file(filepath.Join(bin, "takt-agent"), "/usr/bin/takt-agent", 0o755),
		file(filepath.Join(units, "takt-agent.service"), "/lib/systemd/system/takt-agent.service", 0o644),
		dir("/etc/takt-agent", 0o750),
		config(filepath.Join(root, "edge-agent", "agent.example.yaml"), "/etc/takt-agent/agent.yaml"),
	}
	p.Scripts = scripts(root, "agent")
	p.Depends = []string{"adduser | passwd"}
	return p
}

func servicesPackage(root, bin, units string) *nfpm.Info {
	p := common("takt-services", "Takt services: ingest (MQTT to Kafka to PostgreSQL), aggregator (OEE), API and dashboard, migrations")
	p.Contents = files.Contents{dir("/etc/takt", 0o750)}
	for _, b := range []string{"takt-ingest", "takt-aggregator", "takt-api", "takt-migrate", "takt-loadgen"} {
		p.Contents = append(p.Contents, file(filepath.Join(bin, b), "/usr/bin/"+b, 0o755))
	}
	for _, u := range []string{"takt-ingest.service", "takt-aggregator.service", "takt-api.service", "takt-partitions.service", "takt-partitions.timer"} {
		p.Contents = append(p.Contents, file(filepath.Join(units, u), "/lib/systemd/system/"+u, 0o644))
	}
	for name, src := range map[string]string{"ingest": "ingest/cmd/takt-ingest", "aggregator": "aggregator/cmd/takt-aggregator", "api": "api/cmd/takt-api"} {
		p.Contents = append(p.Contents, config(filepath.Join(root, src, "example.yaml"), "/etc/takt/"+name+".yaml"))
	}
	p.Contents = append(p.Contents, config(filepath.Join(root, "packaging", "takt.env"), "/etc/takt/takt.env"))
	p.Scripts = scripts(root, "services")
	p.Depends = []string{"adduser | passwd"}
	return p
}

func scripts(root, prefix string) nfpm.Scripts {
	s := func(name string) string { return filepath.Join(root, "packaging", "scripts", prefix+"-"+name+".sh") }
	return nfpm.Scripts{PreInstall: s("preinst"), PostInstall: s("postinst"), PreRemove: s("prerm"), PostRemove: s("postrm")}
}

// write packages info as a .deb at path.
func write(info *nfpm.Info, path string) error {
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
