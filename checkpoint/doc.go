// Package checkpoint captures the state of a running kernel so that it can
// be rolled back after a failed code reload and restored after a restart.
//
// A [Checkpoint] holds the kernel ID, the version and SHA-256 of the code
// that produced the state, the creation time, the state itself (opaque
// bytes), named queue positions and free-form metadata.
// [Checkpoint.MarshalBinary] and [Checkpoint.WriteTo] encode it in a
// versioned, little-endian binary format with CRC32C (Castagnoli)
// checksums; [Decode] and [Read] decode it. The format is described byte
// by byte in docs/checkpoint-format.md.
//
// Encoding is deterministic, and decoding is strict: every byte sequence
// that [Decode] accepts re-encodes to itself, and anything else — a
// truncation, a flipped bit, a hostile length — fails with a
// [*FormatError] that gives the byte offset and wraps one of
// [ErrBadMagic], [ErrVersion], [ErrTruncated], [ErrChecksum] or
// [ErrCorrupt]. Sections that a newer writer adds are kept, not dropped,
// in [Checkpoint.Extra].
//
// A [Store] keeps checkpoints per kernel under increasing sequence
// numbers. [MemStore] keeps them in memory; [FileStore] keeps one file per
// checkpoint in a directory, written so that a crash never leaves a
// partial checkpoint under a final name. Both are safe for concurrent use,
// and both report damaged checkpoints with a [DamagedError] while still
// returning the good ones.
package checkpoint
