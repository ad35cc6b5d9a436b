// sin and cos of an fp32 angle to about 1 ulp for |angle| < 4e5, on every device.
// GLSL's sin/cos are only specified to 2^-11 absolute error on [-pi, pi] and are undefined
// outside it; RoPE angles reach position * inv_freq ~ 1e5 radians, where native instructions
// can be off by 1e-3. So: Cody-Waite reduction by pi/2 (pi/2 split into four 6-bit pieces,
// exact when multiplied by k < 2^18, plus an fp32 remainder) and Taylor polynomials on
// [-pi/4, pi/4] (truncation error < 1e-11). `precise` stops the compiler from fusing or
// reordering the reduction, which would change its rounding.
void accurate_sincos(float angle, out float sine, out float cosine) {
  const float two_over_pi = uintBitsToFloat(0x3f22f983u);
  const float pio2_1 = uintBitsToFloat(0x3fc80000u);  // 1.5625
  const float pio2_2 = uintBitsToFloat(0x3c040000u);  // 0x1.08p-7
  const float pio2_3 = uintBitsToFloat(0x39780000u);  // 0x1.fp-13
  const float pio2_4 = uintBitsToFloat(0x36540000u);  // 0x1.a8p-19
  const float pio2_5 = uintBitsToFloat(0x328885a3u);  // pi/2 - the four above, rounded
  precise float k = roundEven(angle * two_over_pi);
  precise float r = angle - k * pio2_1;
  r = r - k * pio2_2;
  r = r - k * pio2_3;
  r = r - k * pio2_4;
  r = r - k * pio2_5;
  float r2 = r * r;
  float s = -1.0 / 39916800.0;
  s = s * r2 + 1.0 / 362880.0;
  s = s * r2 - 1.0 / 5040.0;
  s = s * r2 + 1.0 / 120.0;
  s = s * r2 - 1.0 / 6.0;
  s = r + r * r2 * s;
  float c = 1.0 / 479001600.0;
  c = c * r2 - 1.0 / 3628800.0;
  c = c * r2 + 1.0 / 40320.0;
  c = c * r2 - 1.0 / 720.0;
  c = c * r2 + 1.0 / 24.0;
  c = c * r2 - 0.5;
  c = 1.0 + r2 * c;
  int quadrant = int(k) & 3;
  sine = quadrant == 0 ? s : quadrant == 1 ? c : quadrant == 2 ? -s : -c;
  cosine = quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;
}
