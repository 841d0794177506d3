package testbed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// MakeTone writes a WAV file (8 kHz, mono, signed 16-bit) holding a sine at
// freq Hz for seconds, with sox.
func MakeTone(t testing.TB, path string, freq, seconds int) string {
	t.Helper()
	sox := RequireTool(t, "sox")
	out, err := exec.Command(sox, "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
		path, "synth", strconv.Itoa(seconds), "sine", strconv.Itoa(freq), "vol", "0.5").CombinedOutput()
	if err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
	return path
}

// WAV is decoded PCM audio.
type WAV struct {
	Rate     int
	Channels int
	Samples  []int16 // interleaved if Channels > 1
}

// ReadWAV reads a 16-bit PCM WAV file. A data chunk whose size was never
// filled in (a recorder that did not finish) is read to the end of the file.
func ReadWAV(path string) (WAV, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return WAV{}, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return WAV{}, fmt.Errorf("%s: not a RIFF/WAVE file", path)
	}
	var w WAV
	bits := 0
	for p := 12; p+8 <= len(b); {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4 : p+8]))
		body := b[p+8:]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return WAV{}, fmt.Errorf("%s: short fmt chunk", path)
			}
			if f := binary.LittleEndian.Uint16(body[0:2]); f != 1 && f != 0xFFFE {
				return WAV{}, fmt.Errorf("%s: format %d is not PCM", path, f)
			}
			w.Channels = int(binary.LittleEndian.Uint16(body[2:4]))
			w.Rate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
		case "data":
			if bits != 16 {
				return WAV{}, fmt.Errorf("%s: %d bits per sample, want 16", path, bits)
			}
			if size == 0 || size > len(body) {
				size = len(body)
			}
			size &^= 1
			w.Samples = make([]int16, size/2)
			for i := range w.Samples {
				w.Samples[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return w, nil
		}
		p += 8 + size + size&1
	}
	return WAV{}, errors.New(path + ": no data chunk")
}

// Tone describes how much of a signal is a given frequency.
type Tone struct {
	Seconds float64 // length of the signal
	// Active is the share of 20 ms frames that are not silence.
	Active float64
	// Share is the fraction of the active frames' energy at the frequency
	// (Goertzel), from 0 to 1; a clean sine gives close to 1.
	Share float64
}

// MeasureTone measures how much of w (mono) is a sine at freq Hz.
func MeasureTone(w WAV, freq float64) Tone {
	if w.Rate == 0 || len(w.Samples) == 0 {
		return Tone{}
	}
	frame := w.Rate / 50 // 20 ms
	var active, frames int
	var inTone, total float64
	for off := 0; off+frame <= len(w.Samples); off += frame {
		frames++
		x := make([]float64, frame)
		var energy float64
		for i := range x {
			x[i] = float64(w.Samples[off+i]) / 32768
			energy += x[i] * x[i]
		}
		// Silence: RMS below -50 dBFS.
		if math.Sqrt(energy/float64(frame)) < 0.003 {
			continue
		}
		active++
		total += energy
		inTone += goertzel(x, freq, float64(w.Rate))
	}
	t := Tone{Seconds: float64(len(w.Samples)) / float64(w.Rate)}
	if frames > 0 {
		t.Active = float64(active) / float64(frames)
	}
	if total > 0 {
		t.Share = math.Min(1, inTone/total)
	}
	return t
}

// goertzel returns the energy of x at freq, scaled so that a pure sine at
// freq gives its own total energy (sum of squares).
func goertzel(x []float64, freq, rate float64) float64 {
	n := float64(len(x))
	coeff := 2 * math.Cos(2*math.Pi*freq/rate)
	var s1, s2 float64
	for _, v := range x {
		s := v + coeff*s1 - s2
		s2, s1 = s1, s
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * power / n
}
