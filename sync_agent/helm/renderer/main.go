// Command helm-renderer renders many Helm releases in one process, each exactly as
// `helm template` does, so that a restore pays helm's start-up (the Go initialisation of
// every Kubernetes scheme, cobra, plugins) once instead of once per release.
//
// It links the pinned Helm's own packages and runs what `helm template` runs: `pkg/action`
// Install with DryRun and ClientOnly, the cluster's Kubernetes version and API versions, and
// prints what `helm template` prints (`# Source:` comments, hooks after the manifest).
//
// Request on stdin, one JSON object:
//
//	{"workers": 4, "timeout": 120, "maxBytes": 67108864,
//	 "releases": [{"name": "web", "namespace": "shop", "chart": "/abs/chart-or-archive.tgz",
//	               "values": {...}, "crds": true, "kubeVersion": "v1.36.3",
//	               "apiVersions": ["apps/v1", "apps/v1/Deployment"]}]}
//
// Answer on stdout, one JSON object with one entry per release, in request order:
//
//	{"releases": [{"manifest": "---\n# Source: ..."}, {"error": "template: ..."},
//	              {"oversize": true}]}
//
// A release whose manifest is larger than maxBytes (or whose JSON string is more than twice
// that) is answered `oversize` without it, so the reader can bound what it reads; one that
// takes longer than `timeout` seconds is answered with an error. The exit status is 0
// whenever an answer was written; 2 when the request could not be read.
// sync_agent/helm/template.py is the only caller.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"
)

// maxError is how much of an error message is answered (its end: helm's cause is last).
const maxError = 4000

type request struct {
	Workers  int       `json:"workers"`
	Timeout  float64   `json:"timeout"`
	MaxBytes int       `json:"maxBytes"`
	Releases []release `json:"releases"`
}

type release struct {
	Name        string          `json:"name"`
	Namespace   string          `json:"namespace"`
	Chart       string          `json:"chart"`
	Values      json.RawMessage `json:"values"`
	CRDs        bool            `json:"crds"`
	KubeVersion string          `json:"kubeVersion"`
	APIVersions []string        `json:"apiVersions"`
}

type answer struct {
	Manifest json.RawMessage `json:"manifest,omitempty"`
	Error    string          `json:"error,omitempty"`
	Oversize bool            `json:"oversize,omitempty"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "helm-renderer: the request on stdin is not JSON: %v\n", err)
		os.Exit(2)
	}
	answers := renderAll(req)
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if err := out.Encode(map[string][]answer{"releases": answers}); err != nil {
		fmt.Fprintf(os.Stderr, "helm-renderer: writing the answer: %v\n", err)
		os.Exit(1)
	}
	// Exiting ends any render still running past its timeout.
	os.Exit(0)
}

// renderAll renders the releases concurrently, at most req.Workers at a time. A release past
// its timeout gives its worker slot back: its goroutine is left to the process's exit.
func renderAll(req request) []answer {
	answers := make([]answer, len(req.Releases))
	slots := make(chan struct{}, max(req.Workers, 1))
	timeout := time.Duration(req.Timeout * float64(time.Second))
	var wg sync.WaitGroup
	for i, rel := range req.Releases {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			answers[i] = withTimeout(rel, timeout, req.MaxBytes)
		}()
	}
	wg.Wait()
	return answers
}

func withTimeout(rel release, timeout time.Duration, maxBytes int) answer {
	done := make(chan answer, 1)
	go func() { done <- answerFor(rel, maxBytes) }()
	select {
	case a := <-done:
		return a
	case <-time.After(timeout):
		return answer{Error: fmt.Sprintf("helm template did not finish in %gs", timeout.Seconds())}
	}
}

func answerFor(rel release, maxBytes int) (a answer) {
	defer func() {
		if p := recover(); p != nil { // a chart must not take the other releases down
			a = answer{Error: fmt.Sprintf("helm panicked rendering the chart: %v", p)}
		}
	}()
	manifest, err := render(rel)
	if err != nil {
		message := err.Error()
		return answer{Error: message[max(len(message)-maxError, 0):]}
	}
	if len(manifest) > maxBytes {
		return answer{Oversize: true}
	}
	var encoded bytes.Buffer
	enc := json.NewEncoder(&encoded)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(manifest); err != nil {
		return answer{Error: err.Error()}
	}
	if encoded.Len() > 2*maxBytes {
		return answer{Oversize: true}
	}
	return answer{Manifest: bytes.TrimRight(encoded.Bytes(), "\n")}
}

// render is `helm template NAME CHART --namespace NS --kube-version V --api-versions A
// --values VALUES [--include-crds]`: cmd/helm/template.go and runInstall, without the CLI.
func render(rel release) (string, error) {
	vals := map[string]interface{}{}
	if err := yaml.Unmarshal(rel.Values, &vals); err != nil { // as helm reads --values
		return "", fmt.Errorf("failed to parse the values: %w", err)
	}
	ch, err := loadChart(rel.Chart)
	if err != nil {
		return "", err
	}
	client, err := install(rel)
	if err != nil {
		return "", err
	}
	done, err := client.Run(ch, vals)
	if err != nil {
		if done != nil {
			return "", fmt.Errorf("%w\n\nUse --debug flag to render out invalid YAML", err)
		}
		return "", err
	}
	var manifests strings.Builder
	fmt.Fprintln(&manifests, strings.TrimSpace(done.Manifest))
	for _, hook := range done.Hooks {
		fmt.Fprintf(&manifests, "---\n# Source: %s\n%s\n", hook.Path, hook.Manifest)
	}
	return manifests.String(), nil
}

// loadChart loads a chart directory or archive and refuses what `helm template` refuses:
// library charts, and dependencies declared in Chart.yaml but missing from charts/.
func loadChart(path string) (*chart.Chart, error) {
	ch, err := loader.Load(path)
	if err != nil {
		return nil, err
	}
	switch ch.Metadata.Type {
	case "", "application":
	default:
		return nil, fmt.Errorf("%s charts are not installable", ch.Metadata.Type)
	}
	if req := ch.Metadata.Dependencies; req != nil {
		if err := action.CheckDependencies(ch, req); err != nil {
			return nil, fmt.Errorf("An error occurred while checking for chart dependencies. "+
				"You may need to run `helm dependency build` to fetch missing dependencies: %w", err)
		}
	}
	return ch, nil
}

// install is the Install action `helm template` configures: a client-only dry run that
// replaces any release of the name, for the given cluster version and API versions.
func install(rel release) (*action.Install, error) {
	client := action.NewInstall(&action.Configuration{Log: func(string, ...interface{}) {}})
	if rel.KubeVersion != "" {
		parsed, err := chartutil.ParseKubeVersion(rel.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("invalid kube version '%s': %s", rel.KubeVersion, err)
		}
		client.KubeVersion = parsed
	}
	client.DryRun = true
	client.DryRunOption = "true"
	client.ReleaseName = rel.Name
	client.Namespace = rel.Namespace
	client.Replace = true
	client.ClientOnly = true
	client.APIVersions = chartutil.VersionSet(rel.APIVersions)
	client.IncludeCRDs = rel.CRDs
	client.Timeout = 300 * time.Second
	return client, nil
}
