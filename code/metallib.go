package code

// inspectMetallib is being written; this placeholder keeps the package building.
func inspectMetallib(name string, b []byte, opts Options) (*Info, error) {
	return nil, fileErr(name, FormatMetallib, ErrUnknownFormat, "metallib validation not implemented yet")
}
