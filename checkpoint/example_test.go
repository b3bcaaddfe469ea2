package checkpoint_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hotkernel/hotkernel/checkpoint"
)

func Example() {
	c := &checkpoint.Checkpoint{
		KernelID:    "matmul",
		CodeVersion: 3,
		CodeSHA256:  sha256.Sum256([]byte("kernel code")),
		Created:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		State:       []byte{1, 2, 3, 4},
		Queues:      map[string]uint64{"input.enqueued": 1234, "input.processed": 1200},
		Metadata:    map[string]string{"reason": "before reload"},
	}
	b, err := c.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	d, err := checkpoint.Decode(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(b), d.KernelID, d.CodeVersion, d.Queues["input.processed"])

	b[len(b)/2] ^= 1
	_, err = checkpoint.Decode(b)
	fmt.Println(errors.Is(err, checkpoint.ErrChecksum))
	// Output:
	// 218 matmul 3 1200
	// true
}

func ExampleFileStore() {
	dir, err := os.MkdirTemp("", "checkpoints")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	store, err := checkpoint.OpenFileStore(dir, checkpoint.Options{Keep: 3})
	if err != nil {
		log.Fatal(err)
	}
	for i := range 5 {
		c := &checkpoint.Checkpoint{
			KernelID: "matmul",
			Created:  time.Unix(int64(i), 0),
			State:    []byte{byte(i)},
		}
		if _, err := store.Save(ctx, c); err != nil {
			log.Fatal(err)
		}
	}
	refs, err := store.List(ctx, "matmul")
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range refs {
		fmt.Println(r.Seq, r.Created.Unix())
	}

	// On restart: the newest checkpoint that decodes. Damaged newer ones
	// are reported, not hidden.
	c, ref, err := store.Latest(ctx, "matmul")
	if c == nil {
		log.Fatal(err) // none at all (ErrNotFound), or all damaged
	}
	if err != nil {
		log.Print(err) // some newer checkpoints are damaged
	}
	fmt.Println("restore", ref.Seq, c.State)
	// Output:
	// 3 2
	// 4 3
	// 5 4
	// restore 5 [4]
}
