// Command kube-validate decodes Kubernetes manifests strictly against the API
// types compiled into it: every unknown or duplicated field, every wrong type
// and every kind it does not know is an error. It is the offline counterpart of
// `kubectl apply --validate=strict` used by the chart tests.
//
// Usage: kube-validate FILE... ("-" reads standard input). Each YAML document
// yields one JSON line {"source","index","apiVersion","kind","name","errors"};
// the exit status is 1 when any document has errors.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

type result struct {
	Source     string   `json:"source"`
	Index      int      `json:"index"`
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Errors     []string `json:"errors"`
}

func newDecoder() (runtime.Decoder, error) {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer(), nil
}

func validate(dec runtime.Decoder, doc []byte) []string {
	_, _, err := dec.Decode(doc, nil, nil)
	if err == nil {
		return nil
	}
	if strict, ok := runtime.AsStrictDecodingError(err); ok {
		msgs := make([]string, 0, len(strict.Errors()))
		for _, e := range strict.Errors() {
			msgs = append(msgs, e.Error())
		}
		return msgs
	}
	return []string{err.Error()}
}

func run(dec runtime.Decoder, source string, r io.Reader, out *json.Encoder) (bool, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	ok := true
	for index := 0; ; {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return ok, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", source, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		res := result{Source: source, Index: index, Errors: []string{}}
		var obj unstructured.Unstructured
		asJSON, err := yaml.YAMLToJSON(doc)
		if err == nil {
			if string(bytes.TrimSpace(asJSON)) == "null" {
				continue // a document holding only comments
			}
			index++
			err = obj.UnmarshalJSON(asJSON)
		}
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
		} else {
			res.APIVersion, res.Kind, res.Name = obj.GetAPIVersion(), obj.GetKind(), obj.GetName()
			if errs := validate(dec, doc); len(errs) > 0 {
				res.Errors = append(res.Errors, errs...)
			}
		}
		if len(res.Errors) > 0 {
			ok = false
		}
		if err := out.Encode(res); err != nil {
			return false, err
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-validate FILE... (- for stdin)")
		os.Exit(2)
	}
	dec, err := newDecoder()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	allOK := true
	for _, name := range os.Args[1:] {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			defer f.Close()
			r = f
		}
		ok, err := run(dec, name, r, out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		allOK = allOK && ok
	}
	if !allOK {
		os.Exit(1)
	}
}
