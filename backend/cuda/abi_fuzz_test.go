package cuda

import (
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

// FuzzParsePTXMeta feeds arbitrary text to the offline reader of the ABI
// globals: it must never panic, and what it accepts must satisfy the
// ABI's limits.
func FuzzParsePTXMeta(f *testing.F) {
	f.Add([]byte(".visible .global .align 4 .u32 hk_abi = 1;\n.visible .global .align 8 .u64 hk_state_len = 4096;\n.visible .global .align 4 .u32 hk_state_layout = 1;\n"))
	f.Add([]byte(".visible .global .u32 hk_block = 0x400; // comment\n.global .u64 hk_abi = =;"))
	f.Add([]byte(".global\n= ;\n.global .b32 hk_max_output = 99999999999999999999;"))
	info := &code.Info{Entries: []code.Entry{{Name: "hk_process"}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parsePTXMeta(b, info, "f.ptx")
		if err != nil {
			return
		}
		if m.block > maxBlock || m.maxOutput > maxOutputLimit {
			t.Fatalf("accepted %+v", m)
		}
	})
}
