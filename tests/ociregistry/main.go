// A real OCI registry for the Helm tests: go-containerregistry's in-memory registry
// (pkg/registry, the one its own tests use) behind TLS and HTTP basic auth on loopback.
// Prints the port it listens on, then serves until killed.
package main

import (
	"crypto/subtle"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	cert := flag.String("cert", "", "server certificate chain (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	user := flag.String("user", "", "username every request must carry")
	password := os.Getenv("OCIREGISTRY_PASSWORD")
	flag.Parse()

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	registryHandler := registry.New(registry.Logger(log.New(os.Stderr, "", 0)))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(*user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="ociregistry"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		registryHandler.ServeHTTP(w, r)
	})
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ServeTLS(listener, *cert, *key))
}
