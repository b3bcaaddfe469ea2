package code

//go:generate sh testdata/generate.sh
