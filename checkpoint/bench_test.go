package checkpoint

import (
	"context"
	"fmt"
	"io"
	"testing"
)

var benchSizes = []int{4 << 10, 1 << 20, 16 << 20}

func benchCheckpoint(size int) *Checkpoint {
	c := sample()
	c.State = make([]byte, size)
	for i := range c.State {
		c.State[i] = byte(i * 31)
	}
	return c
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func BenchmarkMarshalBinary(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			c := benchCheckpoint(size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.MarshalBinary(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriteTo(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			c := benchCheckpoint(size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			enc := mustEncode(b, benchCheckpoint(size))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFileStoreSave(b *testing.B) {
	ctx := context.Background()
	s, err := OpenFileStore(b.TempDir(), Options{Keep: 4})
	if err != nil {
		b.Fatal(err)
	}
	c := benchCheckpoint(1 << 20)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Save(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileStoreLatest(b *testing.B) {
	ctx := context.Background()
	s, err := OpenFileStore(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	c := benchCheckpoint(1 << 20)
	for range 4 {
		if _, err := s.Save(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Latest(ctx, c.KernelID); err != nil {
			b.Fatal(err)
		}
	}
}
