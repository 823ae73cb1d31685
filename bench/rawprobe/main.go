// rawprobe measures how fast the API server takes objects: it POSTs each object of a
// JSON-lines file (one {"path": ..., "body": {...}} per line) with plain net/http over
// reused connections, `-workers` at a time, and prints the count and elapsed seconds as
// JSON. Objects are sent in file order in "waves" separated by lines {"barrier": true}, so
// Namespaces exist before the objects in them. It is the baseline the benchmark compares
// gitops-restore against: the API server's own limit on this machine, not a client's.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

type line struct {
	Path    string          `json:"path"`
	Body    json.RawMessage `json:"body"`
	Barrier bool            `json:"barrier"`
}

func main() {
	server := flag.String("server", "", "API server URL")
	ca := flag.String("ca", "", "CA certificate file")
	cert := flag.String("cert", "", "client certificate file")
	key := flag.String("key", "", "client key file")
	input := flag.String("objects", "", "JSON-lines file of objects")
	workers := flag.Int("workers", 32, "concurrent requests")
	dryRun := flag.Bool("dry-run", false, "send every request with dryRun=All (nothing stored)")
	apply := flag.Bool("apply", false, "server-side apply (PATCH) instead of create (POST)")
	flag.Parse()

	pair, err := tls.LoadX509KeyPair(*cert, *key)
	check(err)
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(*ca)
	check(err)
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool},
		MaxIdleConnsPerHost: *workers,
		MaxConnsPerHost:     *workers,
	}}

	waves := [][]line{{}}
	file, err := os.Open(*input)
	check(err)
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		var l line
		check(json.Unmarshal(scanner.Bytes(), &l))
		if l.Barrier {
			waves = append(waves, []line{})
			continue
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], l)
	}
	check(scanner.Err())

	started := time.Now()
	created, failed := 0, 0
	var mu sync.Mutex
	for _, wave := range waves {
		jobs := make(chan line)
		var wg sync.WaitGroup
		for i := 0; i < *workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l := range jobs {
					ok := send(client, requestFor(*server, l, *apply, *dryRun), l.Body)
					mu.Lock()
					if ok {
						created++
					} else {
						failed++
					}
					mu.Unlock()
				}
			}()
		}
		for _, l := range wave {
			jobs <- l
		}
		close(jobs)
		wg.Wait()
	}
	elapsed := time.Since(started).Seconds()
	out, _ := json.Marshal(map[string]any{"created": created, "failed": failed, "seconds": elapsed})
	fmt.Println(string(out))
}

type target struct{ method, url, contentType string }

// requestFor is a create (POST to the collection) or a server-side apply (PATCH to the
// object, field manager "rawprobe", conflicts forced, no strict re-parse of the body), as
// gitops-restore sends it.
func requestFor(server string, l line, apply, dryRun bool) target {
	query := url.Values{}
	if dryRun {
		query.Set("dryRun", "All")
	}
	if !apply {
		return target{"POST", server + l.Path + "?" + query.Encode(), "application/json"}
	}
	var object struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	check(json.Unmarshal(l.Body, &object))
	query.Set("fieldManager", "rawprobe")
	query.Set("force", "true")
	query.Set("fieldValidation", "Ignore")
	return target{"PATCH", server + l.Path + "/" + object.Metadata.Name + "?" + query.Encode(),
		"application/apply-patch+yaml"}
}

func send(client *http.Client, t target, body []byte) bool {
	for attempt := 0; attempt < 5; attempt++ {
		req, err := http.NewRequest(t.method, t.url, bytes.NewReader(body))
		check(err)
		req.Header.Set("Content-Type", t.contentType)
		// Only metadata back, as gitops-restore asks: less for the server to encode.
		req.Header.Set("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json")
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 429 || resp.StatusCode >= 500 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode >= 300 {
			fmt.Fprintf(os.Stderr, "%s: HTTP %d\n", t.url, resp.StatusCode)
		}
		return resp.StatusCode < 300 || resp.StatusCode == 409
	}
	return false
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
