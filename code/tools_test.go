package code

import (
	"os"
	"testing"

	"github.com/hotkernel/hotkernel/internal/ptxas"
)

// requireToolsEnv, when set to 1, turns a missing external tool from a
// skipped test into a failed one, so that a machine meant to have the
// tools cannot pass by skipping.
const requireToolsEnv = "HOTKERNEL_REQUIRE_TOOLS"

// requirePTXAS returns the path of ptxas, found as Options.PTXAS would find
// it with no configured path (HOTKERNEL_PTXAS, then PATH). When ptxas is
// missing it skips the test, or fails it if HOTKERNEL_REQUIRE_TOOLS=1.
func requirePTXAS(t testing.TB) string {
	t.Helper()
	path, err := ptxas.Find("")
	if err != nil {
		if os.Getenv(requireToolsEnv) == "1" {
			t.Fatalf("%v (%s=1)", err, requireToolsEnv)
		}
		t.Skipf("%v; set %s to run this test", err, ptxas.EnvVar)
	}
	return path
}
