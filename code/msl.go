package code

// inspectMSL is being written; this placeholder keeps the package building.
func inspectMSL(name string, b []byte, opts Options) (*Info, error) {
	return nil, fileErr(name, FormatMSL, ErrUnknownFormat, "msl validation not implemented yet")
}
