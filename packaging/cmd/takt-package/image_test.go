package main

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The services' image, written as an OCI layout without a daemon, reads back as an
// index holding the amd64 image under its version; the image runs as 65532, holds
// exactly the binaries, the users, the authorities and the directories (no shell),
// and its binaries run from the image's own filesystem: as root, chrooted into it as
// the image's user, so nothing of this machine's is used.
func TestImage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "takt.oci")
	var stdout bytes.Buffer
	if err := takt(t, &stdout, "image", "-version", "0.1.0-test", "-arch", "amd64", "-out", out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "takt-services:0.1.0-test sha256:") {
		t.Fatalf("takt-package image printed %q", stdout.String())
	}
	img := imageFor(t, out, "0.1.0-test", v1.Platform{OS: "linux", Architecture: "amd64"})
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config: user %q, platform %s/%s", cfg.Config.User, cfg.OS, cfg.Architecture)
	}
	if cfg.Config.Labels["org.opencontainers.image.version"] != "0.1.0-test" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}

	fsys := t.TempDir()
	names := extract(t, img, fsys)
	want := []string{"etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt",
		"etc/takt", "tmp", "usr", "usr/bin", "usr/bin/takt-aggregator", "usr/bin/takt-api", "usr/bin/takt-ingest", "usr/bin/takt-loadgen", "usr/bin/takt-migrate"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("the image holds\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	if info, err := os.Stat(filepath.Join(fsys, "tmp")); err != nil || info.Mode()&os.ModeSticky == 0 || info.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v %v", info.Mode(), err)
	}
	for _, b := range []string{"takt-ingest", "takt-aggregator", "takt-api", "takt-migrate", "takt-loadgen"} {
		bi, err := buildinfo.ReadFile(filepath.Join(fsys, "usr/bin", b))
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || !strings.Contains(settings["-tags"], "timetzdata") {
			t.Errorf("%s: built with CGO_ENABLED=%q -tags=%q, want a static binary with the zone database", b, settings["CGO_ENABLED"], settings["-tags"])
		}
		cmd := exec.Command(filepath.Join(fsys, "usr/bin", b), "--version")
		if os.Geteuid() == 0 {
			cmd = exec.Command("chroot", "--userspec=65532:65532", fsys, "/usr/bin/"+b, "--version")
		} else {
			t.Log("not root: running the binaries from the extracted image without chroot")
		}
		v, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(v), b+" 0.1.0-test (revision ") {
			t.Errorf("%s --version from the image: %q %v", b, v, err)
		}
	}
}

// imageFor reads the image for platform under the tag ref from the layout at dir.
func imageFor(t *testing.T, dir, ref string, platform v1.Platform) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range tm.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != ref {
			continue
		}
		idx, err := top.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			if m.Platform != nil && m.Platform.Equals(platform) {
				img, err := idx.Image(m.Digest)
				if err != nil {
					t.Fatal(err)
				}
				return img
			}
		}
	}
	t.Fatalf("%s: no image %s for %s/%s", dir, ref, platform.OS, platform.Architecture)
	return nil
}

// extract writes img's filesystem into dir and returns the names it holds.
func extract(t *testing.T, img v1.Image, dir string) []string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, h.FileInfo().Mode()); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, h.FileInfo().Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected entry type %c in the image", h.Name, h.Typeflag)
		}
	}
}
