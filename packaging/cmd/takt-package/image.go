package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The services' container image: the one definition, for every architecture.
//
//   - /usr/bin: takt-ingest, takt-aggregator, takt-api, takt-migrate and takt-loadgen
//     (capacity planning, as a Job), static pure-Go
//     binaries with the time zone database built in (the aggregator's shifts and days
//     are in each site's zone, and the image has no /usr/share/zoneinfo).
//   - /etc/passwd and /etc/group naming root and takt (65532), the user it runs as;
//     /etc/ssl/certs/ca-certificates.crt, the build machine's authorities, for TLS to
//     PostgreSQL, Kafka and MQTT with public certificates; /tmp, world-writable and
//     sticky; /etc/takt, where a deployment mounts the configuration.
//   - Nothing else: no shell, no package manager, no libc. The image has no default
//     command: a deployment names the service (takt-ingest -c /etc/takt/ingest.yaml all).
const (
	imageUID   = 65532
	imageUser  = "takt"
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
	imageTitle = "takt-services"
)

// platforms maps Debian architecture names to OCI platforms.
var platforms = map[string]v1.Platform{
	"amd64": {OS: "linux", Architecture: "amd64"},
	"arm64": {OS: "linux", Architecture: "arm64"},
	"armhf": {OS: "linux", Architecture: "arm", Variant: "v7"},
}

func runImage(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("takt-package image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "0.1.0", "the image's version (its tag in the layout)")
	archs := fs.String("arch", "amd64,arm64,armhf", "architectures, comma-separated: amd64, arm64, armhf")
	out := fs.String("out", "dist/takt-services.oci", "the OCI image layout directory to write (replaced)")
	cas := fs.String("ca-bundle", caBundle, "the certificate authorities to include (PEM bundle)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(*cas)
	if err != nil {
		return fmt.Errorf("-ca-bundle: %w (Debian: apt-get install ca-certificates)", err)
	}
	created := buildTime(root)
	index := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range strings.Split(*archs, ",") {
		platform, ok := platforms[arch]
		if !ok {
			return fmt.Errorf("-arch %q: want amd64, arm64 or armhf", arch)
		}
		bin, err := os.MkdirTemp("", "takt-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(bin)
		fmt.Fprintf(stderr, "takt-package: building the image for %s\n", arch)
		if err := crossBuild(root, arch, *version, bin, []string{"timetzdata"}, servicePackages...); err != nil {
			return err
		}
		img, err := serviceImage(bin, ca, platform, *version, created)
		if err != nil {
			return fmt.Errorf("image for %s: %w", arch, err)
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(index, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": *version})); err != nil {
		return fmt.Errorf("%s: %w", *out, err)
	}
	digest, err := index.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s:%s %s\n", *out, imageTitle, *version, digest)
	return nil
}

// buildTime is the time of the commit built (so that one commit gives one image),
// or now outside a repository.
func buildTime(root string) time.Time {
	if b, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output(); err == nil {
		if s, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return time.Unix(s, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

// serviceImage is the image of the binaries in bin, for platform.
func serviceImage(bin string, ca []byte, platform v1.Platform, version string, created time.Time) (v1.Image, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	add := func(name string, mode int64, typ byte, body []byte) error {
		h := &tar.Header{Name: name, Mode: mode, Typeflag: typ, ModTime: created, Size: int64(len(body)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/takt/", "usr/", "usr/bin/"} {
		if err := add(d, 0o755, tar.TypeDir, nil); err != nil {
			return nil, err
		}
	}
	if err := add("tmp/", 0o1777, tar.TypeDir, nil); err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:Takt services:/nonexistent:/sbin/nologin\n", imageUser, imageUID, imageUID)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", imageUser, imageUID)
	for name, body := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		if err := add(name, 0o644, tar.TypeReg, []byte(body)); err != nil {
			return nil, err
		}
	}
	if err := add(strings.TrimPrefix(caBundle, "/"), 0o644, tar.TypeReg, ca); err != nil {
		return nil, err
	}
	var binaries []string
	for _, pkg := range servicePackages {
		name := filepath.Base(pkg)
		b, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			return nil, err
		}
		if err := add("usr/bin/"+name, 0o755, tar.TypeReg, b); err != nil {
			return nil, err
		}
		binaries = append(binaries, name)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "takt-package image", Comment: strings.Join(binaries, " "),
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS, cfg.Variant = platform.Architecture, platform.OS, platform.Variant
	cfg.Created = v1.Time{Time: created}
	cfg.Config.User = fmt.Sprintf("%d:%d", imageUID, imageUID)
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/bin", "SSL_CERT_FILE=" + caBundle}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       imageTitle,
		"org.opencontainers.image.description": "Takt services: " + strings.Join(binaries, ", "),
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.licenses":    "Proprietary",
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return img, nil
}
