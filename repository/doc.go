// Package repository reads and writes a kernel repository: a directory
// tree on disk that holds the versions of many kernels, each version an
// artifact file with a kernel.json manifest beside it, and per kernel an
// optional policy.json that chooses which version to run.
//
//	REPO/
//	  counter/
//	    policy.json          optional: {"policy": "pinned", "version": 1}
//	    1/
//	      kernel.json
//	      kernel.wasm
//	    2/
//	      kernel.json
//	      kernel.wasm
//
// Scan reads the whole tree once and reports, per version, whether it is
// Complete (a valid manifest and an artifact whose SHA-256 matches it),
// Incomplete (something is still missing or half-written) or Invalid
// (something is wrong that waiting will not fix), and per kernel which
// complete version its policy selects. Load re-reads one version and
// re-checks it; Put publishes a new version crash-safely; Diff compares
// two snapshots.
//
// Nothing outside the repository directory is ever read or written:
// kernel IDs and version names are checked before they are used as path
// elements, symbolic links inside the repository are not followed (an
// entry that is one is reported, never used), and every file is opened
// through an os.Root. docs/repository.md describes the layout, the
// manifest and the rules in full.
package repository
