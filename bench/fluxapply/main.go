// fluxapply applies a directory of manifests with Flux's own apply engine (fluxcd/pkg/ssa),
// the way kustomize-controller does, so the benchmark can put Flux's engine beside ours on
// the same objects.
//
// kustomize-controller builds a ResourceManager over a non-caching controller-runtime client
// with a kstatus poller, labels every object with the Kustomization's owner labels, sets the
// SSA concurrency (--concurrent-ssa, default 4) and calls ApplyAllStaged: CRDs, ClusterRoles
// and Namespaces first (applied, then waited for), class kinds next, then everything else,
// each object dry-run applied, compared with the live one and applied if it differs. Here the
// client's rate limiter is lifted (-qps, -burst) so that the engine, not client-go's token
// bucket, is what is measured.
//
// With -mode create it instead POSTs every object with client-go's dynamic client from
// -concurrency goroutines, kinds in the same stage order: "32 concurrent Go client-go creates",
// the plain client-go baseline (full responses, typed round trips), beside bench/rawprobe.
//
// Prints one JSON line: seconds, objects, actions, requests by HTTP method.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// countingTransport counts requests by HTTP method, as the API server would see them.
type countingTransport struct {
	next   http.RoundTripper
	counts sync.Map // method -> *int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n, _ := t.counts.LoadOrStore(r.Method, new(int64))
	atomic.AddInt64(n.(*int64), 1)
	return t.next.RoundTrip(r)
}

func (t *countingTransport) snapshot() map[string]int64 {
	out := map[string]int64{}
	t.counts.Range(func(k, v any) bool {
		out[k.(string)] = atomic.LoadInt64(v.(*int64))
		return true
	})
	return out
}

func readObjects(dir string) ([]*unstructured.Unstructured, error) {
	var objects []*unstructured.Unstructured
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		found, err := ssautils.ReadObjects(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		objects = append(objects, found...)
		return nil
	})
	return objects, err
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	dir := flag.String("dir", "", "directory of manifests (read recursively)")
	mode := flag.String("mode", "staged", "staged (ssa ApplyAllStaged) or create (client-go POSTs)")
	concurrency := flag.Int("concurrency", 4, "kustomize-controller's --concurrent-ssa (default 4)")
	qps := flag.Float64("qps", 10000, "client QPS")
	burst := flag.Int("burst", 10000, "client burst")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	fail(err)
	config.QPS, config.Burst = float32(*qps), *burst
	counter := &countingTransport{}
	config.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })

	objects, err := readObjects(*dir)
	fail(err)
	started := time.Now()
	var actions map[string]int
	switch *mode {
	case "staged":
		actions = applyStaged(config, objects, *concurrency)
	case "create":
		actions = createAll(config, objects, *concurrency)
	default:
		fail(fmt.Errorf("unknown -mode %q", *mode))
	}
	out, _ := json.Marshal(map[string]any{
		"mode": *mode, "seconds": time.Since(started).Seconds(), "objects": len(objects),
		"actions": actions, "requests": counter.snapshot(),
	})
	fmt.Println(string(out))
}

func applyStaged(config *rest.Config, objects []*unstructured.Unstructured, concurrency int) map[string]int {
	httpClient, err := rest.HTTPClientFor(config)
	fail(err)
	mapper, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	fail(err)
	kube, err := client.New(config, client.Options{HTTPClient: httpClient, Mapper: mapper})
	fail(err)
	poller := polling.NewStatusPoller(kube, mapper, polling.Options{})
	manager := ssa.NewResourceManager(kube, poller, ssa.Owner{
		Field: "kustomize-controller", Group: "kustomize.toolkit.fluxcd.io"})
	manager.SetConcurrency(concurrency)
	manager.SetOwnerLabels(objects, "bench", "flux-system")

	options := ssa.DefaultApplyOptions()
	options.WaitTimeout = 5 * time.Minute
	changes, err := manager.ApplyAllStaged(context.Background(), objects, options)
	fail(err)
	actions := map[string]int{}
	for _, entry := range changes.Entries {
		actions[string(entry.Action)]++
	}
	return actions
}

// stageOf puts kinds in ApplyAllStaged's order, so both modes meet the server alike.
func stageOf(o *unstructured.Unstructured) int {
	switch {
	case ssautils.IsClusterDefinition(o):
		return 0
	case ssautils.IsClassDefinition(o):
		return 1
	default:
		return 2
	}
}

func createAll(config *rest.Config, objects []*unstructured.Unstructured, concurrency int) map[string]int {
	httpClient, err := rest.HTTPClientFor(config)
	fail(err)
	mapper, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	fail(err)
	dyn, err := dynamic.NewForConfigAndClient(config, httpClient)
	fail(err)
	sort.SliceStable(objects, func(i, j int) bool { return stageOf(objects[i]) < stageOf(objects[j]) })

	var created, failed int64
	for stage := 0; stage <= 2; stage++ {
		work := make(chan *unstructured.Unstructured)
		var wg sync.WaitGroup
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range work {
					if err := create(dyn, mapper, o); err != nil {
						fmt.Fprintln(os.Stderr, err)
						atomic.AddInt64(&failed, 1)
					} else {
						atomic.AddInt64(&created, 1)
					}
				}
			}()
		}
		for _, o := range objects {
			if stageOf(o) == stage {
				work <- o
			}
		}
		close(work)
		wg.Wait()
	}
	return map[string]int{"created": int(created), "failed": int(failed)}
}

func create(dyn dynamic.Interface, mapper meta.RESTMapper, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	var mapping *meta.RESTMapping
	var err error
	for attempt := 0; attempt < 30; attempt++ { // a new CRD's kind is served a moment later
		if mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
		if r, ok := mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ssautils.FmtUnstructured(o), err)
	}
	resource := dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		_, err = resource.Namespace(o.GetNamespace()).Create(context.Background(), o, metav1.CreateOptions{})
	} else {
		_, err = resource.Create(context.Background(), o, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ssautils.FmtUnstructured(o), err)
	}
	return nil
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxapply:", err)
		os.Exit(1)
	}
}
