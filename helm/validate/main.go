// Command kube-validate checks rendered Kubernetes manifests (helm template
// output) offline, as far as that can go without an API server.
//
// Every object is checked three ways:
//
//   - against the schema of the built-in types that client-go embeds (the
//     structured-merge-diff schema behind server-side apply, generated from
//     the OpenAPI document): an unknown field or a value of the wrong type
//     is an error;
//   - by a strict decode into the typed Go object (duplicate fields,
//     malformed quantities such as "512MB");
//   - by the cross-object rules a typo breaks silently: a workload's
//     selector matches its pod template, a StatefulSet's serviceName is a
//     headless Service of the same manifests, every Service and
//     PodDisruptionBudget selects some pod template, named ports used by
//     probes and Services exist, and names are valid DNS labels.
//
// kubeconform and kubeval cannot do this here: they download their schemas
// at run time. This needs only Go modules (client-go), which the Go module
// proxy serves.
//
// Usage: kube-validate FILE...  ("-" reads standard input). Exit status 1
// when any object is invalid.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest with where it came from.
type object struct {
	where string         // file and document number
	typed runtime.Object // the decoded Go object
}

// podTemplate is the pod part of a workload, for the cross-object rules.
type podTemplate struct {
	owner  string
	labels labels.Set
	ports  map[string]bool // named container ports
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-validate FILE... (- for standard input)")
		os.Exit(2)
	}
	var objects []object
	var problems []string
	for _, path := range os.Args[1:] {
		objs, errs := readFile(path)
		objects = append(objects, objs...)
		problems = append(problems, errs...)
	}
	problems = append(problems, crossCheck(objects)...)
	for _, p := range problems {
		fmt.Println("invalid:", p)
	}
	fmt.Printf("kube-validate: %d objects, %d problems\n", len(objects), len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}

// readFile decodes and checks every document of one file.
func readFile(path string) ([]object, []string) {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, []string{err.Error()}
		}
		defer f.Close()
		in = f
	}
	converter := applyconfigurations.NewTypeConverter(scheme.Scheme)
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	lenient := scheme.Codecs.UniversalDeserializer()
	reader := k8syaml.NewYAMLReader(bufio.NewReader(in))
	var objects []object
	var problems []string
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		where := fmt.Sprintf("%s#%d", path, n)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			break
		}
		obj, errs := checkDocument(where, doc, converter, strict, lenient)
		problems = append(problems, errs...)
		if obj != nil {
			objects = append(objects, *obj)
		}
	}
	return objects, problems
}

// checkDocument runs the schema and strict-decoding checks on one document.
// Returns a nil object for an empty document or one that cannot be decoded.
func checkDocument(where string, doc []byte, converter managedfields.TypeConverter,
	strict, lenient runtime.Decoder) (*object, []string) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", where, err)}
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil, nil
	}
	var content map[string]interface{}
	if err := json.Unmarshal(data, &content); err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", where, err)}
	}
	u := &unstructured.Unstructured{Object: content}
	where = fmt.Sprintf("%s %s/%s", where, u.GetKind(), u.GetName())
	var problems []string
	if _, err := converter.ObjectToTyped(u); err != nil {
		problems = append(problems, fmt.Sprintf("%s: schema: %v", where, err))
	}
	typed, _, err := strict.Decode(data, nil, nil)
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s: decode: %v", where, err))
		// Still take part in the cross-object rules if a lenient decode
		// works (an unknown field), so one mistake is not reported as many.
		if typed, _, err = lenient.Decode(data, nil, nil); err != nil {
			return nil, problems
		}
	}
	problems = append(problems, checkNames(where, typed)...)
	return &object{where: where, typed: typed}, problems
}

// checkNames: object, container and port names are what the API server
// accepts.
func checkNames(where string, obj runtime.Object) []string {
	var problems []string
	add := func(what string, errs []string) {
		for _, e := range errs {
			problems = append(problems, fmt.Sprintf("%s: %s: %s", where, what, e))
		}
	}
	accessor, ok := obj.(metav1.Object)
	if !ok {
		return nil
	}
	if _, isService := obj.(*corev1.Service); isService {
		add("name "+accessor.GetName(), validation.IsDNS1035Label(accessor.GetName()))
	} else {
		add("name "+accessor.GetName(), validation.IsDNS1123Subdomain(accessor.GetName()))
	}
	for k, v := range accessor.GetLabels() {
		add("label "+k, validation.IsQualifiedName(k))
		add("label value "+v, validation.IsValidLabelValue(v))
	}
	if spec := podSpecOf(obj); spec != nil {
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			add("container "+c.Name, validation.IsDNS1123Label(c.Name))
			for _, p := range c.Ports {
				if p.Name != "" {
					add("port "+p.Name, validation.IsValidPortName(p.Name))
				}
			}
			for _, e := range c.Env {
				add("env "+e.Name, validation.IsEnvVarName(e.Name))
			}
			for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if port, named := probePort(probe); named && !hasPort(c, port) {
					problems = append(problems, fmt.Sprintf("%s: container %s: probe uses port %q, which it does not declare", where, c.Name, port))
				}
			}
		}
	}
	return problems
}

func probePort(p *corev1.Probe) (string, bool) {
	if p == nil {
		return "", false
	}
	var port intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	default:
		return "", false
	}
	return port.StrVal, port.Type == intstr.String
}

func hasPort(c corev1.Container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// podSpecOf returns the pod spec of a pod or workload, else nil.
func podSpecOf(obj runtime.Object) *corev1.PodSpec {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	}
	return nil
}

// crossCheck applies the rules that span objects.
func crossCheck(objects []object) []string {
	var problems []string
	var templates []podTemplate
	headless := map[string]bool{}
	for _, o := range objects {
		if svc, ok := o.typed.(*corev1.Service); ok && svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless[svc.Name] = true
		}
	}
	for _, o := range objects {
		var selector *metav1.LabelSelector
		var tmpl *corev1.PodTemplateSpec
		switch w := o.typed.(type) {
		case *appsv1.Deployment:
			selector, tmpl = w.Spec.Selector, &w.Spec.Template
		case *appsv1.StatefulSet:
			selector, tmpl = w.Spec.Selector, &w.Spec.Template
			if !headless[w.Spec.ServiceName] {
				problems = append(problems, fmt.Sprintf("%s: serviceName %q is not a headless Service of these manifests", o.where, w.Spec.ServiceName))
			}
		case *appsv1.DaemonSet:
			selector, tmpl = w.Spec.Selector, &w.Spec.Template
		case *corev1.Pod:
			templates = append(templates, podTemplate{o.where, w.Labels, namedPorts(&w.Spec)})
			continue
		default:
			continue
		}
		templates = append(templates, podTemplate{o.where, tmpl.Labels, namedPorts(&tmpl.Spec)})
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(tmpl.Labels)) {
			problems = append(problems, fmt.Sprintf("%s: selector does not match the pod template's labels", o.where))
		}
	}
	for _, o := range objects {
		switch x := o.typed.(type) {
		case *corev1.Service:
			if len(x.Spec.Selector) == 0 {
				continue
			}
			matched := selected(templates, labels.SelectorFromSet(x.Spec.Selector))
			if len(matched) == 0 {
				problems = append(problems, fmt.Sprintf("%s: selector matches no pod template", o.where))
				continue
			}
			for _, p := range x.Spec.Ports {
				if p.TargetPort.Type == intstr.String && !matched[0].ports[p.TargetPort.StrVal] {
					problems = append(problems, fmt.Sprintf("%s: targetPort %q is not a port of %s", o.where, p.TargetPort.StrVal, matched[0].owner))
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(x.Spec.Selector)
			if err != nil || len(selected(templates, sel)) == 0 {
				problems = append(problems, fmt.Sprintf("%s: selector matches no pod template", o.where))
			}
		}
	}
	return problems
}

func namedPorts(spec *corev1.PodSpec) map[string]bool {
	ports := map[string]bool{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				ports[p.Name] = true
			}
		}
	}
	return ports
}

// selected: the workload templates (pods of tests excluded) sel matches.
func selected(templates []podTemplate, sel labels.Selector) []podTemplate {
	var out []podTemplate
	for _, t := range templates {
		if sel.Matches(t.labels) && !strings.Contains(t.owner, " Pod/") {
			out = append(out, t)
		}
	}
	return out
}
