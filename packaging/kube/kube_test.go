package kube

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// manifests is deploy/kubernetes in this repository.
func manifests(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "kubernetes")
}

// binaries are what the services' image holds (packaging/cmd/takt-package, image.go).
var binaries = []string{"/usr/bin/takt-ingest", "/usr/bin/takt-aggregator", "/usr/bin/takt-api", "/usr/bin/takt-migrate"}

// Every overlay renders, every object decodes strictly, and together they make a
// deployment that can run: each workload runs a binary of the image as a non-root user
// on a read-only root, with requests, a memory limit and (long-running ones) probes;
// every ConfigMap it mounts exists; every budget and autoscaler names exactly one
// workload; the API's Service selects the blue colour's pods and no others.
func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	for overlay, want := range map[string]struct {
		namespace, image string
		apiMin           int32
	}{
		"production": {"takt", "takt/takt-services:0.1.0", 3},
		"staging":    {"takt-staging", "takt-services:0.1.0", 1},
	} {
		t.Run(overlay, func(t *testing.T) {
			objs, err := Render(filepath.Join(manifests(t), "overlays", overlay))
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string][]string{}
			configMaps := map[string]bool{}
			for _, o := range objs {
				kinds[o.Kind] = append(kinds[o.Kind], o.Name)
				if o.Namespace != want.namespace {
					t.Errorf("%s %s: namespace %q, want %q", o.Kind, o.Name, o.Namespace, want.namespace)
				}
				if cm, ok := o.Value.(*corev1.ConfigMap); ok {
					configMaps[cm.Name] = true
				}
			}
			for kind, names := range map[string][]string{
				"Deployment": {"takt-aggregator", "takt-api-blue", "takt-api-green"}, "StatefulSet": {"takt-ingest"},
				"Job": {"takt-migrate"}, "CronJob": {"takt-partitions"}, "Service": {"takt-api", "takt-ingest"},
				"PodDisruptionBudget":     {"takt-aggregator", "takt-api-blue", "takt-api-green", "takt-ingest"},
				"HorizontalPodAutoscaler": {"takt-api-blue", "takt-api-green"},
			} {
				got := slices.Sorted(slices.Values(kinds[kind]))
				if !slices.Equal(got, names) {
					t.Errorf("%s: %v, want %v", kind, got, names)
				}
			}

			pods := map[string]corev1.PodTemplateSpec{} // "Kind/name" of each workload
			for _, o := range objs {
				var (
					spec      corev1.PodSpec
					longLived = true
				)
				switch v := o.Value.(type) {
				case *appsv1.Deployment:
					pods["Deployment/"+v.Name], spec = v.Spec.Template, v.Spec.Template.Spec
					checkSelector(t, o, v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
				case *appsv1.StatefulSet:
					pods["StatefulSet/"+v.Name], spec = v.Spec.Template, v.Spec.Template.Spec
					checkSelector(t, o, v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
				case *batchv1.Job:
					spec, longLived = v.Spec.Template.Spec, false
				case *batchv1.CronJob:
					spec, longLived = v.Spec.JobTemplate.Spec.Template.Spec, false
					if v.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
						t.Errorf("CronJob %s: concurrency %q: two partition runs must not overlap", v.Name, v.Spec.ConcurrencyPolicy)
					}
				default:
					continue
				}
				checkPod(t, o.Kind+"/"+o.Name, spec, longLived, want.image, configMaps)
			}

			api := find[*corev1.Service](t, objs, "takt-api")
			var selected []string
			for name, tpl := range pods {
				if labels.SelectorFromSet(api.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
					selected = append(selected, name)
				}
			}
			if !slices.Equal(selected, []string{"Deployment/takt-api-blue"}) {
				t.Errorf("Service takt-api selects %v, want the blue Deployment only", selected)
			}
			for _, o := range objs {
				switch v := o.Value.(type) {
				case *policyv1.PodDisruptionBudget:
					sel := labels.SelectorFromSet(v.Spec.Selector.MatchLabels)
					var n []string
					for name, tpl := range pods {
						if sel.Matches(labels.Set(tpl.Labels)) {
							n = append(n, name)
						}
					}
					if len(n) != 1 {
						t.Errorf("PodDisruptionBudget %s covers %v: want exactly one workload", v.Name, n)
					}
				case *autoscalingv2.HorizontalPodAutoscaler:
					ref := v.Spec.ScaleTargetRef
					if _, ok := pods[ref.Kind+"/"+ref.Name]; !ok {
						t.Errorf("HorizontalPodAutoscaler %s scales %s/%s, which is not rendered", v.Name, ref.Kind, ref.Name)
					}
					if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas != want.apiMin {
						t.Errorf("HorizontalPodAutoscaler %s: minReplicas %v, want %d", v.Name, v.Spec.MinReplicas, want.apiMin)
					}
				}
			}
		})
	}
}

func checkSelector(t *testing.T, o Object, selector, template map[string]string) {
	t.Helper()
	if !labels.SelectorFromSet(selector).Matches(labels.Set(template)) {
		t.Errorf("%s %s: its selector %v does not select its own pods %v", o.Kind, o.Name, selector, template)
	}
}

func checkPod(t *testing.T, name string, spec corev1.PodSpec, longLived bool, image string, configMaps map[string]bool) {
	t.Helper()
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root user", name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service-account token it never uses", name)
	}
	for _, c := range spec.Containers {
		if c.Image != image {
			t.Errorf("%s: image %q, want %q", name, c.Image, image)
		}
		if len(c.Command) == 0 || !slices.Contains(binaries, c.Command[0]) {
			t.Errorf("%s: command %v runs nothing the image holds (%v)", name, c.Command, binaries)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
			!slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: container %s needs a read-only root, no privilege escalation and no capabilities", name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s needs CPU and memory requests and a memory limit", name, c.Name)
		}
		if longLived && (c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil) {
			t.Errorf("%s: container %s needs startup, liveness and readiness probes", name, c.Name)
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
			t.Errorf("%s: mounts ConfigMap %s, which is not rendered", name, v.ConfigMap.Name)
		}
	}
}

func find[T interface{ GetName() string }](t *testing.T, objs []Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.Value.(T); ok && v.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T %s rendered", zero, name)
	return zero
}

// Strict means strict: a misspelt field, a field given twice and a kind outside the
// API groups the manifests use are each refused, naming the field.
func TestDecodeRefusesWhatTheAPIWouldNot(t *testing.T) {
	for doc, want := range map[string]string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n":                                                                 `unknown field "spec.replica"`,
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ClusterIP\n  type: NodePort\n":                                                  `"type" already set`,
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n    imagePullPolicy: Always\n    image: a\n    commands: [a]\n": `unknown field "spec.containers[0].commands"`,
		"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\n":                                                                            `no kind "Ingress" is registered`,
	} {
		_, err := Decode([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", doc, err, want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [d.yaml]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  templat: {}\n"), 0o644)
	if _, err := Render(dir); err == nil || !strings.Contains(err.Error(), `unknown field "spec.templat"`) || !strings.Contains(err.Error(), "Deployment/x") {
		t.Errorf("rendering a misspelt manifest: %v", err)
	}
}
