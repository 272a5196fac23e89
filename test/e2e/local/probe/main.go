// Command probe is the one binary of the local cluster's smoke tests. It runs in a scratch
// image (no shell, no busybox: no registry is reachable to pull one), so each check the
// cluster needs from inside a pod is a subcommand here. Standard library only.
//
//	probe dns NAME...        resolve each NAME with the pod's resolv.conf; print the addresses
//	probe api [URL]          GET URL (default https://kubernetes.default.svc/version) with the pod's service-account token and CA
//	probe get URL            plain HTTP GET; print the body
//	probe serve ADDR         an HTTP server answering "ok <hostname>" (a Service backend)
//	probe apiserver ADDR     a minimal aggregated API server (HTTPS, self-signed) for the
//	                         group smoke.fib-rpc.local/v1: its `whoami` resource echoes the
//	                         front-proxy headers and client certificate the aggregator sent
//	probe blocked ADDR...    succeed only if no TCP connection to each HOST:PORT can be made
//	probe nodns NAME...      succeed only if no NAME resolves (no upstream resolver is reachable)
//	probe stat PATH...       print mode, uid and gid of each PATH (fsGroup checks)
//	probe write PATH         create PATH with some bytes (a writable-volume check)
//	probe sleep              block forever
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe dns|api|get|serve|apiserver|blocked|nodns|stat|write|sleep ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "dns":
		// The pure-Go resolver reads /etc/resolv.conf, search list and ndots included,
		// like libc does in the images the chart runs.
		r := &net.Resolver{PreferGo: true}
		for _, name := range args {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			addrs, err := r.LookupHost(ctx, name)
			cancel()
			if err != nil {
				fail("dns %s: %v", name, err)
			}
			fmt.Printf("%s %s\n", name, strings.Join(addrs, ","))
		}
	case "api":
		url := "https://kubernetes.default.svc/version"
		if len(args) > 0 {
			url = args[0]
		}
		ca, err := os.ReadFile(saDir + "/ca.crt")
		check(err)
		token, err := os.ReadFile(saDir + "/token")
		check(err)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			fail("no certificate in %s/ca.crt", saDir)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		check(err)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		get(client, req)
	case "get":
		if len(args) != 1 {
			fail("usage: probe get URL")
		}
		req, err := http.NewRequest(http.MethodGet, args[0], nil)
		check(err)
		get(&http.Client{Timeout: 10 * time.Second}, req)
	case "serve":
		addr := ":8080"
		if len(args) > 0 {
			addr = args[0]
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "ok %s\n", host) })
		check(http.ListenAndServe(addr, nil))
	case "apiserver":
		addr := ":8443"
		if len(args) > 0 {
			addr = args[0]
		}
		apiserver(addr)
	case "blocked":
		for _, addr := range args {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil {
				c.Close()
				fail("blocked %s: connected, the pod network reaches it", addr)
			}
			fmt.Printf("%s blocked after %v: %v\n", addr, time.Since(start).Round(time.Millisecond), err)
		}
	case "nodns":
		r := &net.Resolver{PreferGo: true}
		for _, name := range args {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			addrs, err := r.LookupHost(ctx, name)
			cancel()
			if err == nil {
				fail("nodns %s: resolved to %v", name, addrs)
			}
			fmt.Printf("%s does not resolve: %v\n", name, err)
		}
	case "stat":
		for _, p := range args {
			fi, err := os.Stat(p)
			check(err)
			st := fi.Sys().(*syscall.Stat_t)
			fmt.Printf("%s mode=%v uid=%d gid=%d\n", p, fi.Mode(), st.Uid, st.Gid)
		}
	case "write":
		if len(args) != 1 {
			fail("usage: probe write PATH")
		}
		check(os.WriteFile(args[0], []byte("written by probe\n"), 0o644))
		fmt.Printf("wrote %s (uid=%d gid=%d groups=%v)\n", args[0], os.Getuid(), os.Getgid(), groups())
	case "sleep":
		select {}
	default:
		fail("unknown subcommand %q", os.Args[1])
	}
}

func get(client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	check(err)
	fmt.Printf("%s %d\n%s\n", req.URL, resp.StatusCode, body)
	if resp.StatusCode/100 != 2 {
		os.Exit(1)
	}
}

func groups() []int {
	g, _ := os.Getgroups()
	return g
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", a...)
	os.Exit(1)
}

// The group the smoke test registers with an APIService, as KEDA registers
// external.metrics.k8s.io: the aggregator proxies to us with its front-proxy client
// certificate and the caller's identity in X-Remote-* headers.
const smokeGroup, smokeVersion = "smoke.fib-rpc.local", "v1"

func apiserver(addr string) {
	gv := smokeGroup + "/" + smokeVersion
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		check(json.NewEncoder(w).Encode(v))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/apis", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{map[string]any{
			"name": smokeGroup, "versions": []any{map[string]any{"groupVersion": gv, "version": smokeVersion}},
			"preferredVersion": map[string]any{"groupVersion": gv, "version": smokeVersion},
		}}})
	})
	mux.HandleFunc("/apis/"+gv, func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
			"resources": []any{map[string]any{"name": "whoami", "singularName": "whoami", "namespaced": false, "kind": "WhoAmI", "verbs": []string{"get"}}}})
	})
	mux.HandleFunc("/apis/"+gv+"/whoami", func(w http.ResponseWriter, r *http.Request) {
		var client []string
		if r.TLS != nil {
			for _, c := range r.TLS.PeerCertificates {
				client = append(client, c.Subject.CommonName)
			}
		}
		reply(w, map[string]any{"kind": "WhoAmI", "apiVersion": gv,
			"user": r.Header.Get("X-Remote-User"), "groups": r.Header.Values("X-Remote-Group"), "clientCertificates": client})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Addr: addr, Handler: mux, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{selfSigned()},
		// Ask for the aggregator's front-proxy certificate, to show it arrives.
		ClientAuth: tls.RequestClientCert,
	}}
	check(srv.ListenAndServeTLS("", ""))
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
