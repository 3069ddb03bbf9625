// go-service: a real Go net/http backend that fails the way production
// backends do, for ngx-upstream-cause's tests, demo and Docker harness.
//
//	/ok         200 "ok"
//	/ping       request-level panic: net/http recovers, logs "http: panic
//	            serving ..." and closes the connection without answering
//	/crash      service-level panic: a goroutine panics, the process exits
//	            (status 2); later connects are refused until it is restarted
//	/bad-gateway   the service's own 502, with a forged cause header
//	               (name from $FORGE_HEADER, default X-Upstream-Cause)
//
// Listens on $LISTEN (default 127.0.0.1:9001).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = "127.0.0.1:9001"
	}
	forge := os.Getenv("FORGE_HEADER")
	if forge == "" {
		forge = "X-Upstream-Cause"
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["boom"]++ // assignment to entry in nil map: a real handler bug
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		go func() {
			var p *struct{ n int }
			p.n++ // nil pointer dereference outside any recover: the process dies
		}()
		// Never answer: the process exits while this handler waits (a
		// deferred signal from the goroutine would race the exit).
		time.Sleep(5 * time.Second)
	})
	mux.HandleFunc("/bad-gateway", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(forge, "forged-by-backend")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintln(w, "the backend's own 502")
	})

	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("go-service listening on %s (pid %d)", addr, os.Getpid())
	log.Fatal(srv.ListenAndServe())
}
