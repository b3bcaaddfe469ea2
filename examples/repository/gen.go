//go:build ignore

// gen.go writes the example repository from the modules of
// examples/kernels: counter version 1 (counter_v1.wasm, state layout 1)
// and version 2 (counter_v2.wasm, state layout 2), pinned to version 1.
// Run it with `go generate ./examples/repository`.
package main

import (
	"context"
	"log"
	"os"

	"github.com/hotkernel/hotkernel/examples/kernels"
	"github.com/hotkernel/hotkernel/repository"
)

func main() {
	if err := os.RemoveAll("counter"); err != nil {
		log.Fatal(err)
	}
	repo, err := repository.Open(".", repository.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for i, name := range []string{"counter_v1", "counter_v2"} {
		m := repository.Manifest{Format: "wasm", Entry: repository.WasmEntry, ABIVersion: 1,
			Metadata: map[string]string{"source": "examples/kernels/c/" + name + ".c"}}
		if err := repo.Put(context.Background(), "counter", uint64(i+1), kernels.Wasm(name), m); err != nil {
			log.Fatal(err)
		}
	}
	policy := []byte("{\"policy\": \"pinned\", \"version\": 1}\n")
	if err := os.WriteFile("counter/policy.json", policy, 0o644); err != nil {
		log.Fatal(err)
	}
}
