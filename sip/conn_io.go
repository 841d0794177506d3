package sip

import (
	"bytes"
	"io"
)

func ioMulti(head, rest []byte, r io.Reader) io.Reader {
	return io.MultiReader(bytes.NewReader(head), bytes.NewReader(rest), r)
}
