// Shared pieces of the native sequence kernels (ntm_native.cpp, dnc_native.cpp): SIMD helpers on
// ATen's Vectorized<float> (masked tails, Sleef exp/log/tanh), the LSTM and GRU cells and the content
// lookup (NTM eqs. 5-6, DNC's C(M, k, beta)), forward and backward.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <cmath>
#include <vector>
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace memrepro_native {

using Vec = at::vec::Vectorized<float>;
constexpr float EPS = 1e-6f;   // memory.EPS: floor of the cosine's denominator
constexpr float TINY = 1e-30f; // memory.TINY: sharpening's log floor

// Denormal floats flushed to zero, and read as zero, while a guard lives (this thread only; x86).
// The DNC's allocation products and decaying link entries reach them routinely, and arithmetic on
// them is slow (measured on the DNC at batch 32: 44 -> 36 ms per sequence batch); values below
// 1.2e-38 change no result that matters.
class FlushDenormals {
#if defined(__SSE__) || defined(_M_X64)
  unsigned int saved_ = _mm_getcsr();
 public:
  FlushDenormals() { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }
#endif
};

// f(b) for every sequence b of the batch, spread over ATen's threads, denormals flushed.
template <typename F>
void for_each_sequence(int64_t B, const F& f) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    FlushDenormals guard;
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// f(offset, count) over [0, n) in SIMD-wide blocks; the last block is a masked partial one. The
// full blocks pass a constant count, so that their loads and stores compile without the masks'
// branches (measured: the DNC's link sweeps ran at ~8 cycles per vector with a computed count).
template <typename F>
C10_ALWAYS_INLINE void blocks(int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) f(i, Vec::size());
  if (i < n) f(i, n - i);
}

inline Vec vsigmoid(const Vec& x) { return Vec(1.f) / (Vec(1.f) + x.neg().exp()); }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
// F.softplus(x) with its default threshold 20: x itself above it.
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }
inline float softplus_grad(float x) { return x > 20.f ? 1.f : sigmoid(x); }
inline float clipped(float x, float c) { return c > 0.f ? std::min(std::max(x, -c), c) : x; }
inline bool passes(float x, float c) { return c <= 0.f || (x >= -c && x <= c); }  // clamp's gradient mask

C10_ALWAYS_INLINE float sum(const Vec& v) { return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v); }

C10_ALWAYS_INLINE float dot(const float* a, const float* b, int64_t n) {
  Vec acc(0.f);
  blocks(n, [&](int64_t i, int64_t c) { acc = at::vec::fmadd(Vec::loadu(a + i, c), Vec::loadu(b + i, c), acc); });
  return sum(acc);
}

// y += alpha x
C10_ALWAYS_INLINE void axpy(float alpha, const float* x, float* y, int64_t n) {
  blocks(n, [&](int64_t i, int64_t c) { at::vec::fmadd(Vec(alpha), Vec::loadu(x + i, c), Vec::loadu(y + i, c)).store(y + i, c); });
}

inline void softmax(float* v, int64_t n) {
  const float m = at::vec::reduce_all<float>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, v, n);
  at::vec::map([m](Vec x) { return (x - Vec(m)).exp(); }, v, v, n);
  const float s = at::vec::reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v, n);
  at::vec::map([s](Vec x) { return x / Vec(s); }, v, v, n);
}

// dz = y * (dy - <y, dy>), the softmax's backward, written into dy.
inline void softmax_backward(const float* y, float* dy, int64_t n) {
  const float d = dot(y, dy, n);
  at::vec::map2([d](Vec yv, Vec g) { return yv * (g - Vec(d)); }, dy, y, dy, n);
}

// A buffer of the given shape from `pool`: a view of the slot's flat tensor when nothing else
// holds that any more and it is large enough (sequences differ in length from batch to batch).
// A DNC's buffers are ~100 MB at batch 32: allocated afresh, every page would be mapped and
// faulted in again at each update (a quarter of the kernel's time, measured).
inline at::Tensor workspace(std::vector<at::Tensor>& pool, size_t slot, at::IntArrayRef sizes, const at::TensorOptions& opt) {
  if (pool.size() <= slot) pool.resize(slot + 1);
  at::Tensor& flat = pool[slot];
  const int64_t numel = c10::multiply_integers(sizes);
  if (!(flat.defined() && flat.storage().use_count() == 1 && flat.numel() >= numel && flat.dtype() == opt.dtype()))
    flat = at::empty({numel}, opt);
  return flat.narrow(0, 0, numel).view(sizes);
}

// --- the controller: one LSTM or GRU layer (controller.LSTMCell, controller.GRUCell) -----------
// Its weights: an LSTM's {W on [x, r_{t-1}, h_{t-1}], b}, or a GRU's {Wx on [x, r_{t-1}], bx,
// Wh on h_{t-1}, bh}. Z[t] holds [x, r_{t-1}, h_{t-1}] for both (a GRU's recurrent input is its
// last C columns). G[t] holds 4C floats per sequence: an LSTM's gate activations (i, f, o, g), or
// a GRU's (r, z, n) and its recurrent candidate term (Wh h_{t-1} + bh)_n, which r multiplies.
// Cs and TC (cell states, tanh c) are the LSTM's only.
using ControllerWeights = std::vector<at::Tensor>;
inline bool is_gru(const ControllerWeights& cw) { return cw.size() == 4; }

// LSTM: gates i, f, o sigmoid, g tanh; c = f c + i g; h = o tanh c.
inline void lstm_forward_row(int64_t C, const float* gp, const float* cprev, float* G, float* c, float* tc, float* h) {
  blocks(C, [&](int64_t j, int64_t n) {
    const Vec i_ = vsigmoid(Vec::loadu(gp + j, n)), f_ = vsigmoid(Vec::loadu(gp + C + j, n)),
              o_ = vsigmoid(Vec::loadu(gp + 2 * C + j, n)), g_ = Vec::loadu(gp + 3 * C + j, n).tanh();
    i_.store(G + j, n); f_.store(G + C + j, n); o_.store(G + 2 * C + j, n); g_.store(G + 3 * C + j, n);
    const Vec cn = f_ * Vec::loadu(cprev + j, n) + i_ * g_, tn = cn.tanh();
    cn.store(c + j, n); tn.store(tc + j, n); (o_ * tn).store(h + j, n);
  });
}

// dG = dL/d(gate pre-activations); dc holds dL/dc_t on entry and dL/dc_{t-1} on exit.
inline void lstm_backward_row(int64_t C, const float* G, const float* cprev, const float* tc, const float* dh, float* dc, float* dG) {
  blocks(C, [&](int64_t j, int64_t n) {
    const Vec i_ = Vec::loadu(G + j, n), f_ = Vec::loadu(G + C + j, n), o_ = Vec::loadu(G + 2 * C + j, n),
              g_ = Vec::loadu(G + 3 * C + j, n), tn = Vec::loadu(tc + j, n), dhv = Vec::loadu(dh + j, n), one(1.f);
    const Vec dcn = Vec::loadu(dc + j, n) + dhv * o_ * (one - tn * tn);
    (dcn * g_ * i_ * (one - i_)).store(dG + j, n);
    (dcn * Vec::loadu(cprev + j, n) * f_ * (one - f_)).store(dG + C + j, n);
    (dhv * tn * o_ * (one - o_)).store(dG + 2 * C + j, n);
    (dcn * i_ * (one - g_ * g_)).store(dG + 3 * C + j, n);
    (dcn * f_).store(dc + j, n);
  });
}

// GRU (PyTorch's form): r, z = sigmoid(gx + gh), n = tanh(gx_n + r gh_n), h = n + z (h_{t-1} - n),
// with gx = Wx [x, r_{t-1}] + bx and gh = Wh h_{t-1} + bh.
inline void gru_forward_row(int64_t C, const float* gx, const float* gh, const float* hprev, float* G, float* h) {
  blocks(C, [&](int64_t j, int64_t n) {
    const Vec r = vsigmoid(Vec::loadu(gx + j, n) + Vec::loadu(gh + j, n)),
              z = vsigmoid(Vec::loadu(gx + C + j, n) + Vec::loadu(gh + C + j, n)), ghn = Vec::loadu(gh + 2 * C + j, n),
              cand = at::vec::fmadd(r, ghn, Vec::loadu(gx + 2 * C + j, n)).tanh();
    r.store(G + j, n); z.store(G + C + j, n); cand.store(G + 2 * C + j, n); ghn.store(G + 3 * C + j, n);
    at::vec::fmadd(z, Vec::loadu(hprev + j, n) - cand, cand).store(h + j, n);
  });
}

// dgx, dgh = dL/dgx, dL/dgh given dh = dL/dh_t; dh_prev = dh z, the direct path to h_{t-1} (the
// caller adds the path through gh).
inline void gru_backward_row(int64_t C, const float* G, const float* hprev, const float* dh, float* dgx, float* dgh, float* dh_prev) {
  blocks(C, [&](int64_t j, int64_t n) {
    const Vec r = Vec::loadu(G + j, n), z = Vec::loadu(G + C + j, n), cand = Vec::loadu(G + 2 * C + j, n),
              ghn = Vec::loadu(G + 3 * C + j, n), dhv = Vec::loadu(dh + j, n), one(1.f);
    const Vec dn = dhv * (one - z) * (one - cand * cand), dz = dhv * (Vec::loadu(hprev + j, n) - cand) * z * (one - z),
              dr = dn * ghn * r * (one - r);
    dr.store(dgx + j, n); dz.store(dgx + C + j, n); dn.store(dgx + 2 * C + j, n);
    dr.store(dgh + j, n); dz.store(dgh + C + j, n); (dn * r).store(dgh + 2 * C + j, n);
    (dhv * z).store(dh_prev + j, n);
  });
}

// --- the controller and output layer around the memory (identical for NTM and DNC) -------------
// Scratch for one step's gate pre-activations: an LSTM's [B, 4C], a GRU's gx and gh [2, B, 3C].
inline at::Tensor gate_scratch(const ControllerWeights& cw, int64_t B, int64_t C, const at::TensorOptions& opt) {
  return is_gru(cw) ? at::empty({2, B, 3 * C}, opt) : at::empty({B, 4 * C}, opt);
}

// Step t of the controller, forward: its gate pre-activations from Z[t], the cell (h_t into the
// first C columns of HR[t]), then the raw interface XI[t] = h_t Wi^T + bi.
inline void controller_forward_step(int64_t t, int64_t C, const at::Tensor& Z, const ControllerWeights& cw, const at::Tensor& Wi,
                                    const at::Tensor& bi, at::Tensor& gates, const at::Tensor& G, const at::Tensor& Cs,
                                    const at::Tensor& TC, const at::Tensor& HR, const at::Tensor& XI) {
  const int64_t B = Z.size(1), HRW = HR.size(2), ZW = Z.size(2);
  float *g = G.data_ptr<float>(), *hr = HR.data_ptr<float>();
  if (is_gru(cw)) {
    auto gx = gates[0], gh = gates[1];
    at::addmm_out(gx, cw[1], Z[t].narrow(1, 0, ZW - C), cw[0].t());
    at::addmm_out(gh, cw[3], Z[t].narrow(1, ZW - C, C), cw[2].t());
    const float *gxp = gx.data_ptr<float>(), *ghp = gh.data_ptr<float>(), *z = Z.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t tb = t * B + b;
      gru_forward_row(C, gxp + b * 3 * C, ghp + b * 3 * C, z + tb * ZW + ZW - C, g + tb * 4 * C, hr + tb * HRW);
    }
  } else {
    at::addmm_out(gates, cw[1], Z[t], cw[0].t());
    const float* gp = gates.data_ptr<float>();
    float *cs = Cs.data_ptr<float>(), *tc = TC.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t tb = t * B + b;
      lstm_forward_row(C, gp + b * 4 * C, cs + tb * C, g + tb * 4 * C, cs + (tb + B) * C, tc + tb * C, hr + tb * HRW);
    }
  }
  auto xi = XI[t];
  at::addmm_out(xi, bi, HR[t].narrow(1, 0, C), Wi.t());
}

// Outputs for all steps at once (nothing recurrent depends on them): YP = HR Wo^T + bo before
// the clip, and y [B, T, O] after it.
inline std::pair<at::Tensor, at::Tensor> outputs(const at::Tensor& HR, const at::Tensor& Wo, const at::Tensor& bo, float clip) {
  const int64_t T = HR.size(0), B = HR.size(1);
  auto YP = at::addmm(bo, HR.view({T * B, HR.size(2)}), Wo.t()).view({T, B, Wo.size(0)});
  return {YP, (clip > 0 ? YP.clamp(-clip, clip) : YP).transpose(0, 1).contiguous()};
}

// The output layer's backward for all steps: {dHR, dWo, dbo}.
inline std::vector<at::Tensor> outputs_backward(const at::Tensor& dy, const at::Tensor& YP, const at::Tensor& HR, const at::Tensor& Wo,
                                                float clip) {
  const int64_t T = HR.size(0), B = HR.size(1), O = Wo.size(0);
  auto dYP = dy.transpose(0, 1).contiguous();
  if (clip > 0) dYP.mul_(YP.ge(-clip).logical_and(YP.le(clip)));
  return {at::mm(dYP.view({T * B, O}), Wo).view({T, B, HR.size(2)}), at::mm(dYP.view({T * B, O}).t(), HR.view({T * B, HR.size(2)})),
          dYP.sum({0, 1})};
}

// The backward's buffers for the controller: {dGP, the gate pre-activation gradients of every step
// (an LSTM's [T, B, 4C]; a GRU's of gx and of gh, [2, T, B, 3C]), dZ, one step's gradient of the
// inputs its W (LSTM) or Wx (GRU) reads}.
inline std::pair<at::Tensor, at::Tensor> controller_grad_buffers(const ControllerWeights& cw, int64_t T, int64_t B, int64_t C,
                                                                 int64_t ZW, const at::TensorOptions& opt) {
  if (is_gru(cw)) return {at::empty({2, T, B, 3 * C}, opt), at::empty({B, ZW - C}, opt)};
  return {at::empty({T, B, 4 * C}, opt), at::empty({B, ZW}, opt)};
}

// Step t of the controller, backward, once the interface gradient dXI[t] is known: dh_t from the
// output layer, step t+1's input and the interface; the cell (an LSTM's dc carried); then the
// input gradients: dL/dr_{t-1} (into dr) and dL/dh_{t-1} (into dh_next).
inline void controller_backward_step(int64_t t, int64_t I, int64_t C, const at::Tensor& dHR, const at::Tensor& dXI, const at::Tensor& Wi,
                                     const ControllerWeights& cw, const at::Tensor& Z, const at::Tensor& G, const at::Tensor& Cs,
                                     const at::Tensor& TC, at::Tensor& dh, at::Tensor& dc, const at::Tensor& dGP, at::Tensor& dZ,
                                     at::Tensor& dr, at::Tensor& dh_next) {
  const int64_t B = dh.size(0), RW = dr.size(1), ZW = Z.size(2);
  at::add_out(dh, dHR[t].narrow(1, 0, C), dh_next);
  dh.addmm_(dXI[t], Wi);
  const float *g = G.data_ptr<float>(), *dhp = dh.data_ptr<float>();
  if (is_gru(cw)) {
    auto dgx = dGP[0][t], dgh = dGP[1][t];
    const float* z = Z.data_ptr<float>();
    float *dgxp = dgx.data_ptr<float>(), *dghp = dgh.data_ptr<float>(), *dnp = dh_next.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t tb = t * B + b;
      gru_backward_row(C, g + tb * 4 * C, z + tb * ZW + ZW - C, dhp + b * C, dgxp + b * 3 * C, dghp + b * 3 * C, dnp + b * C);
    }
    dh_next.addmm_(dgh, cw[2]);
    at::mm_out(dZ, dgx, cw[0]);
    dr.copy_(dZ.narrow(1, I, RW));
    return;
  }
  const float *cs = Cs.data_ptr<float>(), *tc = TC.data_ptr<float>();
  float *dcp = dc.data_ptr<float>(), *dgp = dGP.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t tb = t * B + b;
    lstm_backward_row(C, g + tb * 4 * C, cs + tb * C, tc + tb * C, dhp + b * C, dcp + b * C, dgp + tb * 4 * C);
  }
  at::mm_out(dZ, dGP[t], cw[0]);
  dr.copy_(dZ.narrow(1, I, RW));
  dh_next.copy_(dZ.narrow(1, I + RW, C));
}

// The controller's weight gradients (in the order of its weights), then the interface's {dWi,
// dbi}: one product each over the whole sequence.
inline std::vector<at::Tensor> controller_weight_grads(const ControllerWeights& cw, const at::Tensor& dGP, const at::Tensor& Z,
                                                       const at::Tensor& dXI, const at::Tensor& HR, int64_t C) {
  const int64_t TB = Z.size(0) * Z.size(1), ZW = Z.size(2);
  const auto z = Z.view({TB, ZW});
  auto dWi = at::mm(dXI.view({TB, dXI.size(2)}).t(), HR.view({TB, HR.size(2)}).narrow(1, 0, C)), dbi = dXI.sum({0, 1});
  if (is_gru(cw)) {
    const auto dgx = dGP[0].view({TB, 3 * C}), dgh = dGP[1].view({TB, 3 * C});
    return {at::mm(dgx.t(), z.narrow(1, 0, ZW - C)), dgx.sum(0), at::mm(dgh.t(), z.narrow(1, ZW - C, C)), dgh.sum(0), dWi, dbi};
  }
  const auto dg = dGP.view({TB, dGP.size(2)});
  return {at::mm(dg.t(), z), dg.sum(0), dWi, dbi};
}

// --- content lookup: K(i) = k . M(i) / max(|k| |M(i)|, eps), w = softmax(beta K) ---------------

// Memory inside the kernels is held column by column, [W, N] per sequence (transposed at entry
// and exit): every product over a slot's W floats is then a vertical multiply-add over the N
// slots, with no horizontal sum per slot and head and no masked tail for W = 20 (the NTM's
// forward + backward at batch 32: 19.4 ms per sequence batch with rows of W, 16.3 with columns).

// The norms |M(i)| (into mnorm, unless null: known already) and H keys' products k_h . M(i)
// (into K[h][i]); M is [W, N].
inline void norms_and_products(int64_t N, int64_t W, const float* M, int64_t H, const float* keys, int64_t key_stride, float* mnorm,
                               float* K, int64_t K_stride) {
  if (mnorm) blocks(N, [&](int64_t i, int64_t n) {
    Vec acc(0.f);
    for (int64_t j = 0; j < W; ++j) {
      const Vec m = Vec::loadu(M + j * N + i, n);
      acc = at::vec::fmadd(m, m, acc);
    }
    acc.sqrt().store(mnorm + i, n);
  });
  for (int64_t h = 0; h < H; ++h)
    blocks(N, [&](int64_t i, int64_t n) {
      Vec acc(0.f);
      for (int64_t j = 0; j < W; ++j) acc = at::vec::fmadd(Vec(keys[h * key_stride + j]), Vec::loadu(M + j * N + i, n), acc);
      acc.store(K + h * K_stride + i, n);
    });
}

// Given the products in K: K becomes the cosine, w the content weights; returns |key|.
inline float content_weights(const float* key, int64_t W, float beta, const float* mnorm, int64_t N, float* K, float* w) {
  const float kn = std::sqrt(dot(key, key, W));
  at::vec::map2([kn](Vec dotv, Vec mnv) { return dotv / at::vec::maximum(Vec(kn) * mnv, Vec(EPS)); }, K, K, mnorm, N);
  at::vec::map([beta](Vec x) { return x * Vec(beta); }, w, K, N);
  softmax(w, N);
  return kn;
}

// Backward of `content_weights` from dz = dL/dw: dz becomes ddot = dL/d(k . M(i)); fm[i] gains the
// coefficient of M(i) in dL/dM(i) from |M(i)|; dkey gains the |k| term. Returns dL/dbeta.
inline float content_backward(const float* key, int64_t W, float beta, float kn, const float* mnorm, int64_t N, const float* K,
                              const float* w, float* dz, float* fm, float* dkey) {
  softmax_backward(w, dz, N);  // dz = dL/d(beta K)
  const float dbeta = dot(dz, K, N);
  Vec dkn(0.f);
  blocks(N, [&](int64_t i, int64_t n) {
    const Vec dK = Vec(beta) * Vec::loadu(dz + i, n), mnv = Vec::loadu(mnorm + i, n), den = Vec(kn) * mnv;
    const Vec D = at::vec::maximum(den, Vec(EPS));
    (dK / D).store(dz + i, n);
    // clamp_min passes the gradient where den >= eps; |M(i)| = 0 passes none to M(i)
    const Vec dden = Vec::blendv(Vec(0.f), (Vec(0.f) - dK) * Vec::loadu(K + i, n) / D, den >= Vec(EPS));
    dkn = at::vec::fmadd(dden, mnv, dkn);
    const Vec f = Vec::blendv(Vec(0.f), dden * Vec(kn) / at::vec::maximum(mnv, Vec(TINY)), mnv > Vec(0.f));
    (Vec::loadu(fm + i, n) + f).store(fm + i, n);
  });
  if (kn > 0.f) axpy(sum(dkn) / kn, key, dkey, W);
  return dbeta;
}

// The memory's part of the content lookups' backward (M, dM [W, N]): dkey_h[j] +=
// sum_i ddot_h[i] M[j][i], and dM[j][i] += sum_h ddot_h[i] k_h[j] + fm[i] M[j][i].
inline void content_memory_backward(int64_t N, int64_t W, const float* M, int64_t H, const float* keys, int64_t key_stride,
                                    float* dkeys, int64_t dkey_stride, const float* ddot, int64_t ddot_stride, const float* fm,
                                    float* dM) {
  for (int64_t j = 0; j < W; ++j) {
    const float* m = M + j * N;
    float* g = dM + j * N;
    for (int64_t h = 0; h < H; ++h) dkeys[h * dkey_stride + j] += dot(ddot + h * ddot_stride, m, N);
    blocks(N, [&](int64_t i, int64_t n) {
      Vec gv = at::vec::fmadd(Vec::loadu(fm + i, n), Vec::loadu(m + i, n), Vec::loadu(g + i, n));
      for (int64_t h = 0; h < H; ++h) gv = at::vec::fmadd(Vec(keys[h * key_stride + j]), Vec::loadu(ddot + h * ddot_stride + i, n), gv);
      gv.store(g + i, n);
    });
  }
}

// Read vectors r_h[j] = sum_i w_h(i) M[j][i] (NTM eq. 2); w [R, N].
inline void read(int64_t N, int64_t W, const float* M, int64_t R, const float* w, float* reads) {
  for (int64_t h = 0; h < R; ++h)
    for (int64_t j = 0; j < W; ++j) reads[h * W + j] = dot(w + h * N, M + j * N, N);
}

// Backward of `read`: dw_h[i] += sum_j dr_h[j] M[j][i], dM[j][i] += sum_h dr_h[j] w_h(i).
inline void read_backward(int64_t N, int64_t W, const float* M, int64_t R, const float* w, const float* dr, float* dw, float* dM) {
  for (int64_t h = 0; h < R; ++h)
    for (int64_t j = 0; j < W; ++j) {
      axpy(dr[h * W + j], M + j * N, dw + h * N, N);
      axpy(dr[h * W + j], w + h * N, dM + j * N, N);
    }
}

// One write head (NTM eqs. 3-4, the DNC's write): Mn = M + w (a - M e), as
// memory.erase_add_write's one-head form; M, Mn [W, N].
inline void write(int64_t N, int64_t W, const float* M, const float* w, const float* e, const float* a, float* Mn) {
  for (int64_t j = 0; j < W; ++j)
    blocks(N, [&](int64_t i, int64_t n) {
      const Vec m = Vec::loadu(M + j * N + i, n);
      (m + Vec::loadu(w + i, n) * (Vec(a[j]) - m * Vec(e[j]))).store(Mn + j * N + i, n);
    });
}

// Backward of `write`: dM holds dL/dMn on entry and dL/dM's write part on exit; dw, de, da
// accumulate.
inline void write_backward(int64_t N, int64_t W, const float* M, const float* w, const float* e, const float* a, float* dM, float* dw,
                           float* de, float* da) {
  for (int64_t j = 0; j < W; ++j) {
    Vec de_acc(0.f), da_acc(0.f);
    blocks(N, [&](int64_t i, int64_t n) {
      const Vec g = Vec::loadu(dM + j * N + i, n), m = Vec::loadu(M + j * N + i, n), wv = Vec::loadu(w + i, n);
      at::vec::fmadd(g, Vec(a[j]) - m * Vec(e[j]), Vec::loadu(dw + i, n)).store(dw + i, n);
      de_acc = at::vec::fmadd(g * m, wv, de_acc);
      da_acc = at::vec::fmadd(g, wv, da_acc);
      (g * (Vec(1.f) - wv * Vec(e[j]))).store(dM + j * N + i, n);
    });
    de[j] -= sum(de_acc);
    da[j] += sum(da_acc);
  }
}

}  // namespace memrepro_native
