// The gate's activation of swiglu.comp / swiglu_backward.comp and its derivative:
// silu by default, tanh-approximated GELU with GELU_TANH.
#ifdef GELU_TANH
const float GELU_SQRT_2_OVER_PI = 0.7978845608028654;
const float GELU_CUBIC = 0.044715;
// tanh(x) for |x| > 15 is +-1 in fp32; the clamp keeps drivers' exp-based tanh from overflowing.
float gelu_tanh_inner(float g) { return tanh(clamp(GELU_SQRT_2_OVER_PI * (g + GELU_CUBIC * g * g * g), -15.0, 15.0)); }
float gate_activation(float g) { return 0.5 * g * (1.0 + gelu_tanh_inner(g)); }
float gate_activation_derivative(float g) {
  float t = gelu_tanh_inner(g);
  return 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * GELU_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * g * g);
}
#else
float gate_activation(float g) { return g / (1.0 + exp(-g)); }
// With s = sigmoid(g): s * (1 + g * (1 - s)).
float gate_activation_derivative(float g) {
  float s = 1.0 / (1.0 + exp(-g));
  return s * (1.0 + g * (1.0 - s));
}
#endif
