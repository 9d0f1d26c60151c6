package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// No cluster runs here, so the blue-green script talks to a stand-in for kubectl: this
// test binary, run as kubectl, keeping the rendered production objects in a JSON file
// and acting on them as the API server and the Deployment controller would for the
// commands the script uses: get with a JSONPath, patch --type=merge, set image (the
// new pods become ready unless the image is in FAKE_KUBECTL_BROKEN), rollout status.
// Every call is logged, so the test sees what was asked and in which order.
func TestMain(m *testing.M) {
	if state := os.Getenv("FAKE_KUBECTL_STATE"); state != "" {
		if err := fakeKubectl(state, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fakeKubectl(state string, args []string) error {
	logf, err := os.OpenFile(state+".log", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintln(logf, strings.Join(args, " "))
	logf.Close()
	b, err := os.ReadFile(state)
	if err != nil {
		return err
	}
	var objs []map[string]any
	if err := json.Unmarshal(b, &objs); err != nil {
		return err
	}
	ns := ""
	if len(args) > 1 && args[0] == "-n" {
		ns, args = args[1], args[2:]
	}
	lookup := func(kind, name string) (map[string]any, error) {
		kind = map[string]string{"service": "Service", "deployment": "Deployment"}[kind]
		for _, o := range objs {
			md := o["metadata"].(map[string]any)
			if o["kind"] == kind && md["name"] == name && md["namespace"] == ns {
				return o, nil
			}
		}
		return nil, fmt.Errorf(`%ss %q not found in namespace %q`, strings.ToLower(kind), name, ns)
	}
	save := func() error {
		b, err := json.Marshal(objs)
		if err != nil {
			return err
		}
		return os.WriteFile(state, b, 0o644)
	}
	if len(args) < 2 {
		return fmt.Errorf("unknown command %q", args)
	}
	switch args[0] {
	case "get": // get KIND NAME -o jsonpath={...}
		o, err := lookup(args[1], args[2])
		if err != nil {
			return err
		}
		if len(args) != 5 || args[3] != "-o" || !strings.HasPrefix(args[4], "jsonpath={") {
			return fmt.Errorf("get: the stand-in reads -o jsonpath={...} only, got %q", args[3:])
		}
		fmt.Print(jsonPath(o, strings.TrimSuffix(strings.TrimPrefix(args[4], "jsonpath={"), "}")))
		return nil
	case "patch": // patch KIND NAME --type=merge -p JSON
		o, err := lookup(args[1], args[2])
		if err != nil {
			return err
		}
		if len(args) != 6 || args[3] != "--type=merge" || args[4] != "-p" {
			return fmt.Errorf("patch: want --type=merge -p JSON, got %q", args[3:])
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(args[5]), &p); err != nil {
			return fmt.Errorf("patch: %v", err)
		}
		mergePatch(o, p)
		fmt.Printf("service/%s patched\n", args[2])
		return save()
	case "set": // set image deployment/NAME CONTAINER=IMAGE
		kind, name, _ := strings.Cut(args[2], "/")
		o, err := lookup(kind, name)
		if err != nil {
			return err
		}
		container, image, _ := strings.Cut(args[3], "=")
		c := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		if c["name"] != container {
			return fmt.Errorf("unable to find container named %q", container)
		}
		c["image"] = image
		ready := 2
		if broken := strings.Split(os.Getenv("FAKE_KUBECTL_BROKEN"), ","); contains(broken, image) {
			ready = 0
		}
		o["status"] = map[string]any{"replicas": 2, "updatedReplicas": 2, "readyReplicas": ready}
		fmt.Printf("deployment.apps/%s image updated\n", name)
		return save()
	case "rollout": // rollout status deployment/NAME --timeout=T
		kind, name, _ := strings.Cut(args[2], "/")
		o, err := lookup(kind, name)
		if err != nil {
			return err
		}
		st, _ := o["status"].(map[string]any)
		ready, _ := st["readyReplicas"].(float64)
		want, _ := st["replicas"].(float64)
		if st == nil || ready < want || want == 0 {
			return fmt.Errorf("timed out waiting for the condition (%s: %v of %v updated replicas are available)", name, ready, want)
		}
		fmt.Printf("deployment %q successfully rolled out\n", name)
		return nil
	}
	return fmt.Errorf("the stand-in does not do %q", args[0])
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s && s != "" {
			return true
		}
	}
	return false
}

// jsonPath resolves the paths the script uses: .a.b\.c.d[0].e (dots escaped in keys).
func jsonPath(o map[string]any, path string) string {
	var v any = o
	for _, part := range regexp.MustCompile(`\.((?:[^.\\]|\\.)+)`).FindAllStringSubmatch(path, -1) {
		key, index := strings.ReplaceAll(part[1], `\.`, "."), -1
		if m := regexp.MustCompile(`^(.*)\[(\d+)\]$`).FindStringSubmatch(key); m != nil {
			key = m[1]
			index, _ = strconv.Atoi(m[2])
		}
		mv, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mv[key]
		if index >= 0 {
			l, ok := v.([]any)
			if !ok || index >= len(l) {
				return ""
			}
			v = l[index]
		}
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// mergePatch applies a JSON merge patch (RFC 7386) to o.
func mergePatch(o, p map[string]any) {
	for k, v := range p {
		switch pv := v.(type) {
		case nil:
			delete(o, k)
		case map[string]any:
			ov, ok := o[k].(map[string]any)
			if !ok {
				ov = map[string]any{}
				o[k] = ov
			}
			mergePatch(ov, pv)
		default:
			o[k] = v
		}
	}
}

// The script, against the rendered production overlay: status; a cut-over refused
// while the idle colour is not ready; deploy of a release on the idle colour then
// cut-over (the rollout checked before the Service is switched); roll-back and
// roll-back again; a broken release never receives traffic; the errors of a
// never-switched Service and of a bad command.
func TestBlueGreenScript(t *testing.T) {
	objs, err := Render(filepath.Join(manifests(t), "overlays", "production"))
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	for _, o := range objs {
		var m map[string]any
		if err := yaml.Unmarshal(o.YAML, &m); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "Deployment" && o.Name == "takt-api-blue" {
			m["status"] = map[string]any{"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}
		}
		list = append(list, m)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	b, _ := json.Marshal(list)
	if err := os.WriteFile(state, b, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(manifests(t), "bluegreen.sh")
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command("sh", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECTL="+self, "FAKE_KUBECTL_STATE="+state, "FAKE_KUBECTL_BROKEN=takt/takt-services:0.3.0-broken", "TIMEOUT=5s")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("bluegreen.sh %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	service := func() (live, previous string) {
		t.Helper()
		b, _ := os.ReadFile(state)
		var objs []map[string]any
		json.Unmarshal(b, &objs)
		for _, o := range objs {
			if o["kind"] == "Service" && o["metadata"].(map[string]any)["name"] == "takt-api" {
				return jsonPath(o, `.spec.selector.takt\.dev/track`), jsonPath(o, `.metadata.annotations.takt\.dev/previous-track`)
			}
		}
		t.Fatal("no Service takt-api in the state")
		return "", ""
	}
	expect := func(out, want string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Fatalf("output\n%s\nwant %q in it", out, want)
		}
	}
	calls := func() []string {
		b, _ := os.ReadFile(state + ".log")
		os.Remove(state + ".log")
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}

	expect(run(true, "-n", "takt", "status"), "live: blue (takt/takt-services:0.1.0)\nidle: green (takt/takt-services:0.1.0)")
	expect(run(false, "-n", "takt", "rollback"), "nothing to roll back to: the Service has never been cut over")
	expect(run(false, "-n", "takt", "cutover"), "takt-api-green has not finished rolling out: not switching")
	if live, _ := service(); live != "blue" {
		t.Fatalf("a refused cut-over moved the Service to %s", live)
	}
	expect(run(false, "-n", "other", "status"), `services "takt-api" not found in namespace "other"`)
	calls()

	expect(run(true, "-n", "takt", "deploy", "takt/takt-services:0.2.0"), "takt-api-green runs takt/takt-services:0.2.0 and is ready")
	expect(run(true, "-n", "takt", "cutover"), "takt-api: blue -> green (takt/takt-services:0.2.0)")
	if live, prev := service(); live != "green" || prev != "blue" {
		t.Fatalf("after cut-over the Service selects %q and remembers %q", live, prev)
	}
	log := strings.Join(calls(), "\n")
	rollout := strings.LastIndex(log, "rollout status deployment/takt-api-green")
	patch := strings.Index(log, "patch service takt-api")
	if rollout < 0 || patch < 0 || rollout > patch {
		t.Fatalf("the cut-over must check green's rollout before it switches; calls:\n%s", log)
	}

	expect(run(true, "-n", "takt", "rollback"), "takt-api: green -> blue (takt/takt-services:0.1.0)")
	if live, prev := service(); live != "blue" || prev != "green" {
		t.Fatalf("after roll-back the Service selects %q and remembers %q", live, prev)
	}
	expect(run(true, "-n", "takt", "rollback"), "takt-api: blue -> green")
	expect(run(true, "-n", "takt", "status"), "live: green (takt/takt-services:0.2.0)\nidle: blue (takt/takt-services:0.1.0)")

	// A release whose pods never become ready is deployed on the idle colour (blue) and
	// never receives traffic.
	calls()
	expect(run(false, "-n", "takt", "deploy", "takt/takt-services:0.3.0-broken"), "takt-api-blue has not finished rolling out")
	expect(run(false, "-n", "takt", "cutover"), "takt-api-blue has not finished rolling out: not switching")
	expect(run(false, "-n", "takt", "rollback"), "takt-api-blue has not finished rolling out: not switching")
	if live, _ := service(); live != "green" {
		t.Fatalf("a broken release took the traffic: the Service selects %s", live)
	}
	for _, c := range calls() {
		if strings.HasPrefix(c, "-n takt patch") {
			t.Fatalf("the Service was patched while blue was broken: %s", c)
		}
	}
	expect(run(false, "-n", "takt", "deploy"), "deploy needs the image")
	expect(run(false, "-n", "takt", "switch"), "usage: bluegreen.sh")
}
