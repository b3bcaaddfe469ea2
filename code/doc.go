// Package code holds kernel code artifacts and their validation.
//
// A [Source] is one artifact — PTX, CUBIN, SPIR-V, WGSL, MSL, metallib,
// WebAssembly, or generic source text — with its entry point, metadata,
// creation time, the version a manager assigned to it and the SHA-256 of
// its bytes. [DetectFormat] tells the format from a file name and content.
//
// [Inspect] and [Validate] run a real structural check for each format (a
// tokenizer and parser for the text formats, a decoder for the binary
// ones, a full wazero compile for WebAssembly, and optionally NVIDIA's ptxas
// for PTX). Every failure is an [*Error] that names the file, the line or
// byte offset, and the reason, and wraps a sentinel such as
// [ErrEntryNotFound] for errors.Is.
package code
