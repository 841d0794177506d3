package admin

import "math"

// MOS estimates the listening quality of a voice stream, as a mean opinion
// score from 1 to 4.5, with the E-model of ITU-T G.107 reduced to what the
// relay measures: packet loss and interarrival jitter.
//
//   - Delay: the one-way delay is taken as 20 ms of packetisation plus a
//     jitter buffer of twice the jitter; its impairment Id uses Cole and
//     Rosenbluth's fit of G.107's (Id = 0.024 d + 0.11 (d − 177.3) H(d −
//     177.3), "Voice over IP performance monitoring", ACM SIGCOMM CCR 2001).
//   - Loss: the effective equipment impairment of G.107 §7.2, Ie,eff = Ie +
//     (95 − Ie) · Ppl / (Ppl/BurstR + Bpl), with G.711's Ie = 0 and Bpl =
//     25.1 (with packet loss concealment, G.113 Appendix I) and random loss
//     (BurstR = 1).
//   - R = 93.2 − Id − Ie,eff (the default values of the other factors), and
//     MOS from R by G.107 Annex B: 1 + 0.035 R + R (R − 60)(100 − R) 7·10⁻⁶.
func MOS(lossPct, jitterMS float64) float64 {
	lossPct = math.Max(0, math.Min(lossPct, 100))
	d := 20 + 2*math.Max(jitterMS, 0)
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	const ie, bpl = 0.0, 25.1
	ieEff := ie + (95-ie)*lossPct/(lossPct+bpl)
	r := 93.2 - id - ieEff
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	mos := 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
	return math.Round(math.Max(1, mos)*100) / 100
}
