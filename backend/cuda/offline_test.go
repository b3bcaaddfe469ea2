package cuda_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/backend/cuda"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/internal/ptxas"
)

// minimalPTX is a kernel that follows the ABI: it reports every message
// as done, with no output, and leaves its 64-byte state alone. {{GLOBALS}}
// and {{BODY}} let tests break it.
const minimalPTX = `.version 7.0
.target sm_52
.address_size 64

{{GLOBALS}}

.visible .entry hk_process(
	.param .u64 state, .param .u64 state_len, .param .u64 in, .param .u64 off,
	.param .u32 count, .param .u64 res, .param .u64 out)
{
	.reg .u32 %r<4>;
	.reg .u64 %rd<4>;
	.reg .pred %p;
	ld.param.u64 %rd1, [res];
	cvta.to.global.u64 %rd1, %rd1;
	ld.param.u32 %r1, [count];
	mov.u32 %r2, 0;
LOOP:
	setp.ge.u32 %p, %r2, %r1;
	@%p bra DONE;
	mul.wide.u32 %rd2, %r2, 8;
	add.u64 %rd3, %rd1, %rd2;
	{{BODY}}
	st.global.u32 [%rd3+4], 0;
	add.u32 %r2, %r2, 1;
	bra LOOP;
DONE:
	ret;
}
`

const goodGlobals = `.visible .global .align 4 .u32 hk_abi = 1;
.visible .global .align 8 .u64 hk_state_len = 64;
.visible .global .align 4 .u32 hk_state_layout = 3;
.visible .global .align 4 .u32 hk_max_output = 0;`

func ptx(globals, body string) string {
	if body == "" {
		body = "st.global.u32 [%rd3], 0;"
	}
	return strings.NewReplacer("{{GLOBALS}}", globals, "{{BODY}}", body).Replace(minimalPTX)
}

// needPTXAS skips the test when ptxas is not installed, unless
// HOTKERNEL_REQUIRE_TOOLS=1 asks for it to fail instead.
func needPTXAS(t *testing.T) {
	t.Helper()
	if _, err := ptxas.Find(""); err != nil {
		if os.Getenv("HOTKERNEL_REQUIRE_TOOLS") == "1" {
			t.Fatalf("ptxas is required (HOTKERNEL_REQUIRE_TOOLS=1): %v", err)
		}
		t.Skipf("ptxas not found: %v", err)
	}
}

func offline(t *testing.T, arch string) *cuda.Backend {
	t.Helper()
	cfg := cuda.DefaultConfig()
	cfg.Arch = arch
	b, err := cuda.NewOffline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func src(text, name string) *code.Source {
	return code.FromPTX(text, "hk_process").WithMetadata("name", name)
}

func TestNewWithoutDriver(t *testing.T) {
	cfg := cuda.DefaultConfig()
	cfg.Library = "/nonexistent/libcuda.so.1"
	_, err := cuda.New(cfg)
	if !errors.Is(err, cuda.ErrNoDriver) {
		t.Fatalf("New without a driver: %v, want ErrNoDriver", err)
	}
	if !strings.Contains(err.Error(), "no CUDA driver") || !strings.Contains(err.Error(), "/nonexistent/libcuda.so.1") {
		t.Errorf("error %q should say there is no CUDA driver and name the library", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := cuda.DefaultConfig()
	cfg.BatchTimeout = 0
	cfg.MaxBatchMessages = 0
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "BatchTimeout") || !strings.Contains(err.Error(), "MaxBatchMessages") {
		t.Fatalf("Validate = %v, want both fields named", err)
	}
	if _, err := cuda.NewOffline(cfg); err == nil {
		t.Fatal("NewOffline accepted an invalid Config")
	}
	cfg = cuda.DefaultConfig()
	cfg.Arch = "sm_x"
	if _, err := cuda.NewOffline(cfg); err == nil || !strings.Contains(err.Error(), "Arch") {
		t.Fatalf("NewOffline with a bad Arch: %v", err)
	}
	if _, err := cuda.ParseCompiler("nvcc"); err == nil {
		t.Fatal("ParseCompiler accepted nvcc")
	}
}

func TestOfflineCompile(t *testing.T) {
	needPTXAS(t)
	b := offline(t, "sm_80")
	p, err := b.CompileProgram(context.Background(), src(ptx(goodGlobals, ""), "ok.ptx"))
	if err != nil {
		t.Fatal(err)
	}
	if p.StateLayout() != 3 || p.StateLen() != 64 {
		t.Errorf("layout %d, state %d; want 3 and 64", p.StateLayout(), p.StateLen())
	}
	if _, err := p.Instantiate(context.Background()); !errors.Is(err, cuda.ErrNoDevice) {
		t.Errorf("Instantiate offline: %v, want ErrNoDevice", err)
	}
	if _, ok := b.Device(); ok {
		t.Error("an offline backend says it has a device")
	}
}

// TestOfflineCompileErrors checks that ptxas's errors come back with the
// PTX line, and that ABI violations are named.
func TestOfflineCompileErrors(t *testing.T) {
	needPTXAS(t)
	b := offline(t, "sm_80")
	text := ptx(goodGlobals, "st.global.u32 [%rd9], 0;")
	wantLine := 0
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "%rd9") {
			wantLine = i + 1
		}
	}
	_, err := b.Compile(context.Background(), src(text, "bad.ptx"))
	var ce *code.Error
	if !errors.As(err, &ce) || ce.Line != wantLine || !errors.Is(err, code.ErrAssemble) {
		t.Fatalf("compile error %v; want a code.Error at bad.ptx:%d from ptxas", err, wantLine)
	}
	if !strings.Contains(err.Error(), "bad.ptx:") {
		t.Errorf("error %q does not name the file", err)
	}

	cases := []struct {
		name, globals, want string
	}{
		{"no abi", strings.Replace(goodGlobals, ".visible .global .align 4 .u32 hk_abi = 1;", "", 1), "hk_abi is missing"},
		{"abi 2", strings.Replace(goodGlobals, "hk_abi = 1", "hk_abi = 2", 1), "hk_abi is 2"},
		{"no state_len", strings.Replace(goodGlobals, ".visible .global .align 8 .u64 hk_state_len = 64;", "", 1), "hk_state_len is missing"},
		{"state_len 32-bit", strings.Replace(goodGlobals, ".align 8 .u64 hk_state_len", ".align 4 .u32 hk_state_len", 1), "hk_state_len is .u32"},
		{"huge output", strings.Replace(goodGlobals, "hk_max_output = 0", "hk_max_output = 16777216", 1), "hk_max_output is 16777216"},
		{"block too big", goodGlobals + "\n.visible .global .align 4 .u32 hk_block = 4096;", "hk_block is 4096"},
	}
	for _, c := range cases {
		_, err := b.Compile(context.Background(), src(ptx(c.globals, ""), c.name+".ptx"))
		if !errors.Is(err, cuda.ErrABI) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrABI saying %q", c.name, err, c.want)
		}
	}

	wasm := code.FromWASM([]byte("\x00asm\x01\x00\x00\x00"), "hk_process")
	if _, err := b.Compile(context.Background(), wasm); err == nil || !strings.Contains(err.Error(), "PTX and CUBIN") {
		t.Errorf("compiling WebAssembly: %v", err)
	}
}

// TestOfflineCUBINArch assembles a CUBIN for sm_90 and checks that it is
// accepted for sm_90 and refused for an sm_80 device, with the reason.
func TestOfflineCUBINArch(t *testing.T) {
	needPTXAS(t)
	path, _ := ptxas.Find("")
	cubin, _, err := ptxas.Assemble(context.Background(), path, []byte(ptx(goodGlobals, "")), "sm_90", "k.ptx")
	if err != nil {
		t.Fatal(err)
	}
	s := code.FromCUBIN(cubin, "hk_process").WithMetadata("name", "k.sm_90.cubin")
	if _, err := offline(t, "sm_90").Compile(context.Background(), s); err != nil {
		t.Fatalf("sm_90 CUBIN on sm_90: %v", err)
	}
	_, err = offline(t, "sm_80").Compile(context.Background(), s)
	if !errors.Is(err, code.ErrArch) || !strings.Contains(err.Error(), "sm_90") {
		t.Fatalf("sm_90 CUBIN on sm_80: %v, want an architecture error naming sm_90", err)
	}
}
