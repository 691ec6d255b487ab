package proxytest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// WriteText sends a short WebSocket text frame, masked as a client must.
func WriteText(w io.Writer, msg string) error {
	if len(msg) > 125 {
		return errors.New("proxytest: message too long for one short frame")
	}
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(msg))}
	b = append(b, mask[:]...)
	for i := range len(msg) {
		b = append(b, msg[i]^mask[i%4])
	}
	_, err := w.Write(b)
	return err
}

// ReadText reads one unmasked WebSocket frame from a server and returns
// its payload.
func ReadText(br *bufio.Reader) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return "", err
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return "", err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		return "", errors.New("proxytest: frame too long")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(br, b)
	return string(b), err
}
