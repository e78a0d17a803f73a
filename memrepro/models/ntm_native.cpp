// A whole NTM sequence, forward and backward, as one native call each (memrepro.models.ntm_native).
//
// The same model as memrepro/models/ntm.py with a one-layer LSTM controller: NTM eqs. 2-9
// (Graves et al. 2014), activations and clipping as documented there. On CPU a step of these
// small models is ~100 tiny tensor operations, and the time goes to dispatching them, not to
// arithmetic; here a step is four matrix products (MKL, through ATen) and plain loops. The
// backward pass is derived by hand (docs/models/ntm.md, "Native kernel") and checked against
// autograd on the Python model by tests/test_ntm_native.py.
//
// Layout: time-major buffers [T, B, ...] so that one step is a contiguous block; memory rows
// [N, W] row-major as in the Python model. Shapes: B batch, T steps, I inputs, C controller
// units, N slots, W width, R read heads, H heads (read heads first), S = 2r+1 shifts, O outputs.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <cmath>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr float EPS = 1e-6f;   // memory.EPS: floor of the cosine's denominator
constexpr float TINY = 1e-30f; // memory.TINY: sharpening's log floor

// f(offset, count) over [0, n) in SIMD-wide blocks; the last block is a masked partial one.
template <typename F>
inline void blocks(int64_t n, const F& f) {
  for (int64_t i = 0; i < n; i += Vec::size()) f(i, std::min<int64_t>(Vec::size(), n - i));
}

inline Vec vsigmoid(const Vec& x) { return Vec(1.f) / (Vec(1.f) + x.neg().exp()); }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
// F.softplus(x) with its default threshold 20: x itself above it.
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }
inline float softplus_grad(float x) { return x > 20.f ? 1.f : sigmoid(x); }

C10_ALWAYS_INLINE float dot(const float* a, const float* b, int64_t n) {
  Vec acc(0.f);
  blocks(n, [&](int64_t i, int64_t c) { acc = at::vec::fmadd(Vec::loadu(a + i, c), Vec::loadu(b + i, c), acc); });
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, acc);
}

// y += alpha x
C10_ALWAYS_INLINE void axpy(float alpha, const float* x, float* y, int64_t n) {
  blocks(n, [&](int64_t i, int64_t c) { at::vec::fmadd(Vec(alpha), Vec::loadu(x + i, c), Vec::loadu(y + i, c)).store(y + i, c); });
}

// out[i] += alpha in[(i - offset) mod n]: a circular shift as two contiguous pieces.
inline void add_rotated(float alpha, const float* in, float* out, int64_t n, int64_t offset) {
  const int64_t k = ((offset % n) + n) % n;
  axpy(alpha, in, out + k, n - k);
  axpy(alpha, in + n - k, out, k);
}

// sum_i a[i] b[(i - offset) mod n]
inline float dot_rotated(const float* a, const float* b, int64_t n, int64_t offset) {
  const int64_t k = ((offset % n) + n) % n;
  return dot(a + k, b, n - k) + dot(a, b + n - k, k);
}

// Rows of W floats held in NB SIMD registers (NB = ceil(W / lanes), a compile-time constant so
// that the per-row passes keep their accumulators in registers; the last block is masked).
constexpr int MAX_BLOCKS = 8;
template <int NB>
C10_ALWAYS_INLINE void load_row(Vec* v, const float* p, int64_t W) {
  for (int k = 0; k < NB; ++k) v[k] = Vec::loadu(p + k * Vec::size(), std::min<int64_t>(Vec::size(), W - k * Vec::size()));
}
template <int NB>
C10_ALWAYS_INLINE void store_row(const Vec* v, float* p, int64_t W) {
  for (int k = 0; k < NB; ++k) v[k].store(p + k * Vec::size(), std::min<int64_t>(Vec::size(), W - k * Vec::size()));
}
template <int NB>
C10_ALWAYS_INLINE float sum_row(const Vec* v) {
  Vec s = v[0];
  for (int k = 1; k < NB; ++k) s = s + v[k];
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, s);
}
#define BY_BLOCKS(W, CALL)                                                                       \
  switch ((W + Vec::size() - 1) / Vec::size()) {                                                 \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; case 4: CALL(4); break; \
    case 5: CALL(5); break; case 6: CALL(6); break; case 7: CALL(7); break; default: CALL(8);     \
  }

void softmax(float* v, int64_t n) {
  const float m = at::vec::reduce_all<float>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, v, n);
  at::vec::map([m](Vec x) { return (x - Vec(m)).exp(); }, v, v, n);
  const float s = at::vec::reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v, n);
  at::vec::map([s](Vec x) { return x / Vec(s); }, v, v, n);
}

// dz = y * (dy - <y, dy>), the softmax's backward, written into dy.
void softmax_backward(const float* y, float* dy, int64_t n) {
  const float d = dot(y, dy, n);
  at::vec::map2([d](Vec yv, Vec g) { return yv * (g - Vec(d)); }, dy, y, dy, n);
}

struct Dims {
  int64_t B, T, I, C, N, W, R, H, Hw, S, O, P, Z;
  float clip;  // <= 0: no clipping
  // Interface offsets (ntm.py: keys | beta | gate | shift | gamma | erase | add).
  int64_t o_key, o_beta, o_gate, o_shift, o_gamma, o_erase, o_add;
};

Dims dims(int64_t B, int64_t T, int64_t I, int64_t C, int64_t N, int64_t W, int64_t R, int64_t H, int64_t S, int64_t O, double clip) {
  Dims d{B, T, I, C, N, W, R, H, H - R, S, O, 0, I + R * W + C, static_cast<float>(clip)};
  d.o_key = 0; d.o_beta = H * W; d.o_gate = d.o_beta + H; d.o_shift = d.o_gate + H;
  d.o_gamma = d.o_shift + H * S; d.o_erase = d.o_gamma + H; d.o_add = d.o_erase + d.Hw * W;
  d.P = d.o_add + d.Hw * W;
  return d;
}

inline float clipped(float x, float c) { return c > 0.f ? std::min(std::max(x, -c), c) : x; }
inline bool passes(float x, float c) { return c <= 0.f || (x >= -c && x <= c); }

// Head parameters from the raw interface row (ntm.py's activations after clipping).
void activate(const Dims& d, const float* raw, float* act) {
  const float c = d.clip;
  at::vec::map([c](Vec x) { return c > 0.f ? at::vec::clamp(x, Vec(-c), Vec(c)) : x; }, act, raw, d.P);
  at::vec::map([](Vec x) { return x.tanh(); }, act + d.o_key, act + d.o_key, d.H * d.W);
  for (int64_t h = 0; h < d.H; ++h) {
    act[d.o_beta + h] = softplus(act[d.o_beta + h]);
    act[d.o_gate + h] = sigmoid(act[d.o_gate + h]);
    act[d.o_gamma + h] = 1.f + softplus(act[d.o_gamma + h]);
    softmax(act + d.o_shift + h * d.S, d.S);
  }
  at::vec::map([](Vec x) { return vsigmoid(x); }, act + d.o_erase, act + d.o_erase, d.Hw * d.W);
  at::vec::map([](Vec x) { return x.tanh(); }, act + d.o_add, act + d.o_add, d.Hw * d.W);
}

// One pass over the rows of M_{t-1}: the norms |M(i)| and every head's products k_h . M(i).
template <int NB>
void norms_and_products(const Dims& d, const float* M, const float* a, float* mnorm, float* K, int64_t K_stride) {
  Vec m[NB], key[NB], acc[NB];
  for (int64_t i = 0; i < d.N; ++i) {
    load_row<NB>(m, M + i * d.W, d.W);
    for (int k = 0; k < NB; ++k) acc[k] = m[k] * m[k];
    mnorm[i] = std::sqrt(sum_row<NB>(acc));
    for (int64_t h = 0; h < d.H; ++h) {
      load_row<NB>(key, a + d.o_key + h * d.W, d.W);
      for (int k = 0; k < NB; ++k) acc[k] = m[k] * key[k];
      K[h * K_stride + i] = sum_row<NB>(acc);
    }
  }
}

// Read vectors r_h = sum_i w_h(i) M(i) (eq. 2), each accumulated in registers over the rows.
template <int NB>
void read_rows(const Dims& d, const float* M, const float* w, float* reads) {
  Vec m[NB], acc[NB];
  for (int64_t h = 0; h < d.R; ++h) {
    for (int k = 0; k < NB; ++k) acc[k] = Vec(0.f);
    for (int64_t i = 0; i < d.N; ++i) {
      load_row<NB>(m, M + i * d.W, d.W);
      for (int k = 0; k < NB; ++k) acc[k] = at::vec::fmadd(Vec(w[h * d.N + i]), m[k], acc[k]);
    }
    store_row<NB>(acc, reads + h * d.W, d.W);
  }
}

// Addressing of one head (eqs. 5-9) given K = the products k . M(i): content weights (K becomes
// the cosine), interpolation, shift, sharpening.
void address(const Dims& d, const float* key, float beta, float gate, const float* shift, float gamma, const float* M,
             const float* mnorm, const float* wprev, float* kn, float* K, float* wc, float* wg, float* ws, float* w) {
  const int64_t N = d.N, W = d.W, r = d.S / 2;
  *kn = std::sqrt(dot(key, key, W));
  at::vec::map2([kn = *kn](Vec dotv, Vec mnv) { return dotv / at::vec::maximum(Vec(kn) * mnv, Vec(EPS)); }, K, K, mnorm, N);
  at::vec::map([beta](Vec x) { return x * Vec(beta); }, wc, K, N);
  softmax(wc, N);
  at::vec::map2([gate](Vec c, Vec p) { return Vec(gate) * c + Vec(1.f - gate) * p; }, wg, wc, wprev, N);
  std::fill(ws, ws + N, 0.f);
  for (int64_t m = 0; m < d.S; ++m) add_rotated(shift[m], wg, ws, N, m - r);  // offsets -r..r
  at::vec::map([gamma](Vec x) { return Vec(gamma) * at::vec::maximum(x, Vec(TINY)).log(); }, w, ws, N);
  softmax(w, N);
}

// Backward through one step's write (eqs. 3-4, one write head) and reads (eq. 2), one pass over
// the rows of M_{t-1}: dM holds dL/dM_t on entry and dL/dM_{t-1} (but for the content lookup)
// on exit; dL/dw, dL/de and dL/da accumulate.
template <int NB>
void write_read_backward(const Dims& d, const float* M, const float* w, const float* a, float* da, const float* dr, float* dM,
                         float* dw, bool write) {
  const int64_t N = d.N, W = d.W, R = d.R, V = Vec::size();
  Vec e[NB], ad[NB], de[NB], dad[NB];
  if (write) {
    load_row<NB>(e, a + d.o_erase, W);
    load_row<NB>(ad, a + d.o_add, W);
    for (int k = 0; k < NB; ++k) de[k] = dad[k] = Vec(0.f);
  }
  for (int64_t i = 0; i < N; ++i) {
    Vec m[NB], g[NB], acc[NB];
    load_row<NB>(m, M + i * W, W);
    load_row<NB>(g, dM + i * W, W);
    if (write) {
      const Vec wi(w[R * N + i]);
      for (int k = 0; k < NB; ++k) {
        acc[k] = g[k] * (ad[k] - m[k] * e[k]);
        de[k] = de[k] - g[k] * m[k] * wi;
        dad[k] = at::vec::fmadd(g[k], wi, dad[k]);
        g[k] = g[k] * (Vec(1.f) - wi * e[k]);
      }
      dw[R * N + i] += sum_row<NB>(acc);
    }
    for (int64_t h = 0; h < R; ++h) {
      const Vec whi(w[h * N + i]);
      for (int k = 0; k < NB; ++k) {
        const Vec drk = Vec::loadu(dr + h * W + k * V, std::min<int64_t>(V, W - k * V));
        acc[k] = drk * m[k];
        g[k] = at::vec::fmadd(whi, drk, g[k]);
      }
      dw[h * N + i] += sum_row<NB>(acc);
    }
    store_row<NB>(g, dM + i * W, W);
  }
  if (write) {
    store_row<NB>(de, da + d.o_erase, W);
    store_row<NB>(dad, da + d.o_add, W);
  }
}

// Backward through the content lookups' products and norms (eq. 6), given per head ddot[h][i] =
// dL/d(k_h . M(i)) and per slot fm[i] = the coefficient of M(i) from the norms |M(i)|.
template <int NB>
void content_backward(const Dims& d, const float* M, const float* a, float* da, const float* ddot, int64_t ddot_stride,
                      const float* fm, float* dM) {
  const int64_t N = d.N, W = d.W;
  for (int64_t h = 0; h < d.H; ++h) {  // dL/dk_h = sum_i ddot[h][i] M(i)
    Vec acc[NB], m[NB];
    load_row<NB>(acc, da + d.o_key + h * W, W);
    const float* dd = ddot + h * ddot_stride;
    for (int64_t i = 0; i < N; ++i) {
      load_row<NB>(m, M + i * W, W);
      for (int k = 0; k < NB; ++k) acc[k] = at::vec::fmadd(Vec(dd[i]), m[k], acc[k]);
    }
    store_row<NB>(acc, da + d.o_key + h * W, W);
  }
  for (int64_t i = 0; i < N; ++i) {  // dL/dM(i) += sum_h ddot[h][i] k_h + fm[i] M(i)
    Vec m[NB], g[NB], key[NB];
    load_row<NB>(m, M + i * W, W);
    load_row<NB>(g, dM + i * W, W);
    for (int k = 0; k < NB; ++k) g[k] = at::vec::fmadd(Vec(fm[i]), m[k], g[k]);
    for (int64_t h = 0; h < d.H; ++h) {
      load_row<NB>(key, a + d.o_key + h * W, W);
      for (int k = 0; k < NB; ++k) g[k] = at::vec::fmadd(Vec(ddot[h * ddot_stride + i]), key[k], g[k]);
    }
    store_row<NB>(g, dM + i * W, W);
  }
}

}  // namespace

// Returns {y [B,T,O], h_T, c_T, M_T, r_T, w_T, saved...}.
std::vector<at::Tensor> ntm_forward(at::Tensor x, at::Tensor h0, at::Tensor c0, at::Tensor M0, at::Tensor r0, at::Tensor w0,
                                    at::Tensor Wc, at::Tensor bc, at::Tensor Wi, at::Tensor bi, at::Tensor Wo, at::Tensor bo,
                                    int64_t R, int64_t S, double clip) {
  const Dims d = dims(x.size(0), x.size(1), x.size(2), h0.size(1), M0.size(1), M0.size(2), R, w0.size(1), S, Wo.size(0), clip);
  TORCH_CHECK(d.W <= MAX_BLOCKS * Vec::size(), "native NTM: memory_width ", d.W, " > ", MAX_BLOCKS * Vec::size());
  const int64_t B = d.B, T = d.T, C = d.C, N = d.N, W = d.W, H = d.H, RW = R * W, HR_ = C + RW;
  auto opt = x.options();
  auto xs = x.transpose(0, 1).contiguous();            // [T, B, I]
  auto Z = at::empty({T, B, d.Z}, opt);                // controller inputs [x, r_{t-1}, h_{t-1}]
  auto G = at::empty({T, B, 4 * C}, opt);              // gate activations (i, f, o sigmoid; g tanh)
  auto Cs = at::empty({T + 1, B, C}, opt);             // cell states c_0 .. c_T
  auto TC = at::empty({T, B, C}, opt);                 // tanh(c_t)
  auto XI = at::empty({T, B, d.P}, opt);               // raw interface vectors
  auto ACT = at::empty({T, B, d.P}, opt);              // head parameters after activation
  auto Mem = at::empty({T + 1, B, N, W}, opt);         // M_0 .. M_T
  auto MN = at::empty({T, B, N}, opt);                 // |M_{t-1}(i)|
  auto KN = at::empty({T, B, H}, opt);                 // |k|
  auto K = at::empty({T, B, H, N}, opt);               // cosine similarities (eq. 6)
  auto WCt = at::empty({T, B, H, N}, opt);             // content weights (eq. 5)
  auto WG = at::empty({T, B, H, N}, opt);              // interpolated (eq. 7)
  auto WS = at::empty({T, B, H, N}, opt);              // shifted (eq. 8)
  auto WT = at::empty({T + 1, B, H, N}, opt);          // sharpened (eq. 9): w_0 .. w_T
  auto HR = at::empty({T, B, HR_}, opt);               // output layer's input [h_t, r_t]
  auto gates = at::empty({B, 4 * C}, opt);
  Cs[0].copy_(c0); Mem[0].copy_(M0); WT[0].copy_(w0);
  for (int64_t t = 0; t < T; ++t) Z[t].narrow(1, 0, d.I).copy_(xs[t]);
  Z[0].narrow(1, d.I, RW).copy_(r0.reshape({B, RW}));
  Z[0].narrow(1, d.I + RW, C).copy_(h0);
  auto WcT = Wc.t(), WiT = Wi.t();
  float *z = Z.data_ptr<float>(), *g = G.data_ptr<float>(), *cs = Cs.data_ptr<float>(), *tc = TC.data_ptr<float>(),
        *xi = XI.data_ptr<float>(), *act = ACT.data_ptr<float>(), *mem = Mem.data_ptr<float>(), *mn = MN.data_ptr<float>(),
        *kn = KN.data_ptr<float>(), *Kp = K.data_ptr<float>(), *wc = WCt.data_ptr<float>(), *wg = WG.data_ptr<float>(),
        *ws = WS.data_ptr<float>(), *wt = WT.data_ptr<float>(), *hr = HR.data_ptr<float>();
  const float* gp = gates.data_ptr<float>();

  for (int64_t t = 0; t < T; ++t) {
    at::addmm_out(gates, bc, Z[t], WcT);
    for (int64_t b = 0; b < B; ++b) {  // LSTM cell; h_t goes to the output row and the next input
      const float* gb = gp + b * 4 * C;
      float* G_ = g + (t * B + b) * 4 * C;
      const float* cprev = cs + (t * B + b) * C;
      float* c = cs + ((t + 1) * B + b) * C;
      float* tcb = tc + (t * B + b) * C;
      float* h = hr + (t * B + b) * HR_;
      blocks(C, [&](int64_t j, int64_t n) {
        const Vec i_ = vsigmoid(Vec::loadu(gb + j, n)), f_ = vsigmoid(Vec::loadu(gb + C + j, n)),
                  o_ = vsigmoid(Vec::loadu(gb + 2 * C + j, n)), g_ = Vec::loadu(gb + 3 * C + j, n).tanh();
        i_.store(G_ + j, n); f_.store(G_ + C + j, n); o_.store(G_ + 2 * C + j, n); g_.store(G_ + 3 * C + j, n);
        const Vec cn = f_ * Vec::loadu(cprev + j, n) + i_ * g_, tn = cn.tanh();
        cn.store(c + j, n); tn.store(tcb + j, n); (o_ * tn).store(h + j, n);
      });
    }
    auto xi_t = XI[t];
    at::addmm_out(xi_t, bi, HR[t].narrow(1, 0, C), WiT);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b;
        float* a = act + tb * d.P;
        activate(d, xi + tb * d.P, a);
        const float* Mb = mem + tb * N * W;
        float* mnb = mn + tb * N;
#define NORMS(NB) norms_and_products<NB>(d, Mb, a, mnb, Kp + tb * H * N, N)
        BY_BLOCKS(W, NORMS)
#undef NORMS
        float* wnew = wt + (tb + B) * H * N;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t o = (tb * H + h) * N;
          address(d, a + d.o_key + h * W, a[d.o_beta + h], a[d.o_gate + h], a + d.o_shift + h * S, a[d.o_gamma + h], Mb, mnb,
                  wt + o, kn + tb * H + h, Kp + o, wc + o, wg + o, ws + o, wnew + h * N);
        }
        // Reads of M_{t-1} (eq. 2), then the write (eqs. 3-4).
        float* rd = hr + tb * HR_ + C;
#define READ(NB) read_rows<NB>(d, Mb, wnew, rd)
        BY_BLOCKS(W, READ)
#undef READ
        if (t + 1 < T) {  // the next step's controller input: [x, r_t, h_t]
          float* zn = z + (tb + B) * d.Z;
          std::copy(rd, rd + RW, zn + d.I);
          std::copy(hr + tb * HR_, hr + tb * HR_ + C, zn + d.I + RW);
        }
        float* Mn = mem + (tb + B) * N * W;
        if (d.Hw == 1) {  // M + w (a - M e), as memory.erase_add_write's one-head form
          const float* w = wnew + R * N;
          const float *e = a + d.o_erase, *ad = a + d.o_add;
          for (int64_t i = 0; i < N; ++i) {
            const Vec wi(w[i]);
            blocks(W, [&](int64_t j, int64_t n) {
              const Vec m = Vec::loadu(Mb + i * W + j, n);
              (m + wi * (Vec::loadu(ad + j, n) - m * Vec::loadu(e + j, n))).store(Mn + i * W + j, n);
            });
          }
        } else {  // erasures multiply head by head, then the additions sum
          std::copy(Mb, Mb + N * W, Mn);
          for (int64_t h = 0; h < d.Hw; ++h) {
            const float *w = wnew + (R + h) * N, *e = a + d.o_erase + h * W;
            for (int64_t i = 0; i < N; ++i)
              for (int64_t j = 0; j < W; ++j) Mn[i * W + j] *= 1.f - w[i] * e[j];
          }
          for (int64_t h = 0; h < d.Hw; ++h)
            for (int64_t i = 0; i < N; ++i) axpy(wnew[(R + h) * N + i], a + d.o_add + h * W, Mn + i * W, W);
        }
      }
    });
  }
  // Outputs depend on nothing recurrent: one product for all steps.
  auto YP = at::addmm(bo, HR.view({T * B, HR_}), Wo.t()).view({T, B, d.O});  // pre-clip
  auto y = (d.clip > 0 ? YP.clamp(-d.clip, d.clip) : YP).transpose(0, 1).contiguous();
  auto hT = HR[T - 1].narrow(1, 0, C).contiguous();
  auto rT = HR[T - 1].narrow(1, C, RW).reshape({B, R, W}).contiguous();
  return {y, hT, Cs[T].contiguous(), Mem[T].contiguous(), rT, WT[T].contiguous(),
          Z, G, Cs, TC, XI, ACT, Mem, MN, KN, K, WCt, WG, WS, WT, HR, YP};
}

// Gradients of a sequence's loss given dL/dy: {dh0, dc0, dM0, dr0, dw0, dWc, dbc, dWi, dbi, dWo, dbo}.
std::vector<at::Tensor> ntm_backward(at::Tensor dy, std::vector<at::Tensor> saved, at::Tensor Wc, at::Tensor Wi, at::Tensor Wo,
                                     int64_t I, int64_t R, int64_t S, double clip) {
  auto Z = saved[0], G = saved[1], Cs = saved[2], TC = saved[3], XI = saved[4], ACT = saved[5], Mem = saved[6], MN = saved[7],
       KN = saved[8], K = saved[9], WCt = saved[10], WG = saved[11], WS = saved[12], WT = saved[13], HR = saved[14], YP = saved[15];
  const Dims d = dims(Z.size(1), Z.size(0), I, Cs.size(2), Mem.size(2), Mem.size(3), R, WT.size(2), S, Wo.size(0), clip);
  const int64_t B = d.B, T = d.T, C = d.C, N = d.N, W = d.W, H = d.H, r = S / 2, RW = R * W, HR_ = C + RW;
  auto opt = Z.options();

  // Output layer, all steps at once: dYP = dy through the clip; dHR = dYP Wo.
  auto dYP = dy.transpose(0, 1).contiguous();  // [T, B, O]
  if (d.clip > 0) dYP.mul_(YP.ge(-d.clip).logical_and(YP.le(d.clip)));
  auto dHR = at::mm(dYP.view({T * B, d.O}), Wo).view({T, B, HR_});
  auto dWo = at::mm(dYP.view({T * B, d.O}).t(), HR.view({T * B, HR_}));
  auto dbo = dYP.sum({0, 1});

  auto dXI = at::empty({T, B, d.P}, opt);     // per step, for dWi in one product at the end
  auto dGP = at::empty({T, B, 4 * C}, opt);   // gate pre-activation gradients, likewise for dWc
  auto dh = at::empty({B, C}, opt);
  auto dc = at::zeros({B, C}, opt);
  auto dM = at::zeros({B, N, W}, opt);         // dL/dM_t, carried backwards
  auto dr = at::zeros({B, RW}, opt);           // dL/dr_t: step t+1's part on entry, the output layer's added here
  auto dh_next = at::zeros({B, C}, opt);       // dL/dh_t from step t+1's controller input
  auto dw = at::zeros({B, H, N}, opt);         // dL/dw_t from step t+1's interpolation
  auto scratch = at::empty({B, 3 * H + 1, N}, opt);  // fm, then per head: dws, dwg, dz (ddot)
  auto erased = at::empty({d.Hw > 1 ? B * N * W : 1}, opt);  // several write heads: M_{t-1} partly erased
  auto dZ = at::empty({B, d.Z}, opt);
  auto WiC = Wi.contiguous(), WcC = Wc.contiguous();
  const float *g = G.data_ptr<float>(), *cs = Cs.data_ptr<float>(), *tc = TC.data_ptr<float>(), *xi = XI.data_ptr<float>(),
              *act = ACT.data_ptr<float>(), *mem = Mem.data_ptr<float>(), *mn = MN.data_ptr<float>(), *kn = KN.data_ptr<float>(),
              *Kp = K.data_ptr<float>(), *wc = WCt.data_ptr<float>(), *wg = WG.data_ptr<float>(), *ws = WS.data_ptr<float>(),
              *wt = WT.data_ptr<float>(), *dhr = dHR.data_ptr<float>();
  float *dxi = dXI.data_ptr<float>(), *dgp = dGP.data_ptr<float>(), *dMp = dM.data_ptr<float>(), *dwp = dw.data_ptr<float>(),
        *drp = dr.data_ptr<float>(), *sc = scratch.data_ptr<float>(), *er = erased.data_ptr<float>(), *dhp = dh.data_ptr<float>(),
        *dcp = dc.data_ptr<float>();

  for (int64_t t = T - 1; t >= 0; --t) {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b;
        const float* a = act + tb * d.P;
        float* da = dxi + tb * d.P;
        std::fill(da, da + d.P, 0.f);
        const float* Mb = mem + tb * N * W;
        const float* w = wt + (tb + B) * H * N;  // this step's weights
        float* dMb = dMp + b * N * W;  // holds dL/dM_t (after this step's write) on entry
        float* dwb = dwp + b * H * N;   // holds dL/dw_t from step t+1 on entry
        float* drb = drp + b * RW;  // dL/dr_t: step t+1's part on entry, the output layer's added here
        for (int64_t q = 0; q < RW; ++q) drb[q] += dhr[tb * HR_ + C + q];
        if (d.Hw > 1) {  // several write heads: additions, then erasures in reverse head order
          for (int64_t h = 0; h < d.Hw; ++h) {
            const float *ww = w + (R + h) * N, *ad = a + d.o_add + h * W;
            for (int64_t i = 0; i < N; ++i) {
              dwb[(R + h) * N + i] += dot(dMb + i * W, ad, W);
              axpy(ww[i], dMb + i * W, da + d.o_add + h * W, W);
            }
          }
          float* Me = er + b * N * W;  // M_{t-1} after erasing heads < h, recomputed
          for (int64_t h = d.Hw - 1; h >= 0; --h) {
            std::copy(Mb, Mb + N * W, Me);
            for (int64_t h2 = 0; h2 < h; ++h2) {
              const float *w2 = w + (R + h2) * N, *e2 = a + d.o_erase + h2 * W;
              for (int64_t i = 0; i < N; ++i)
                for (int64_t j = 0; j < W; ++j) Me[i * W + j] *= 1.f - w2[i] * e2[j];
            }
            const float *ww = w + (R + h) * N, *e = a + d.o_erase + h * W;
            float* de = da + d.o_erase + h * W;
            for (int64_t i = 0; i < N; ++i) {
              float dwi = 0.f;
              for (int64_t j = 0; j < W; ++j) {
                const float gm = dMb[i * W + j], m = Me[i * W + j];
                dwi -= gm * m * e[j];
                de[j] -= gm * m * ww[i];
                dMb[i * W + j] = gm * (1.f - ww[i] * e[j]);
              }
              dwb[(R + h) * N + i] += dwi;
            }
          }
        }
#define WRITE_READ(NB) write_read_backward<NB>(d, Mb, w, a, da, drb, dMb, dwb, d.Hw == 1)
        BY_BLOCKS(W, WRITE_READ)
#undef WRITE_READ
        // Addressing of every head (eqs. 5-9), from dL/dw_t back to the head parameters and to
        // dL/dw_{t-1} (interpolation); the content lookup's products are left in ddot, fm.
        float* fm = sc + b * (3 * H + 1) * N;
        std::fill(fm, fm + N, 0.f);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t o = (tb * H + h) * N;
          float* dl = dwb + h * N;  // dL/dw_t, overwritten with dL/dw_{t-1} at the end
          float *dws = fm + N + 3 * h * N, *dwg = dws + N, *dz = dwg + N;
          const float gamma = a[d.o_gamma + h], gate = a[d.o_gate + h], beta = a[d.o_beta + h];
          const float* shift = a + d.o_shift + h * S;
          softmax_backward(w + h * N, dl, N);  // sharpening's softmax: dl = dL/d(gamma log ws)
          Vec dgamma(0.f);
          blocks(N, [&](int64_t i, int64_t n) {  // w = softmax(gamma log max(ws, tiny))
            const Vec wsv = Vec::loadu(ws + o + i, n), v = at::vec::maximum(wsv, Vec(TINY)), dlv = Vec::loadu(dl + i, n);
            dgamma = at::vec::fmadd(dlv, v.log(), dgamma);  // masked lanes: dl = 0
            Vec::blendv(Vec(0.f), dlv * Vec(gamma) / v, wsv >= Vec(TINY)).store(dws + i, n);
          });
          da[d.o_gamma + h] = at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, dgamma);
          std::fill(dwg, dwg + N, 0.f);
          for (int64_t m = 0; m < S; ++m) {  // ws[i] = sum_m s[m] wg[i - (m - r)]
            da[d.o_shift + h * S + m] = dot_rotated(dws, wg + o, N, m - r);
            add_rotated(shift[m], dws, dwg, N, -(m - r));
          }
          da[d.o_gate + h] = dot(dwg, wc + o, N) - dot(dwg, wt + o, N);
          at::vec::map([gate](Vec x) { return Vec(gate) * x; }, dz, dwg, N);
          at::vec::map([gate](Vec x) { return Vec(1.f - gate) * x; }, dl, dwg, N);
          softmax_backward(wc + o, dz, N);  // content softmax: dz = dL/d(beta K)
          da[d.o_beta + h] = dot(dz, Kp + o, N);
          const float knh = kn[tb * H + h];
          const float* mnb = mn + tb * N;
          Vec dkn(0.f);
          blocks(N, [&](int64_t i, int64_t n) {  // K = dot / max(|k| |M(i)|, eps); dz becomes ddot
            const Vec dK = Vec(beta) * Vec::loadu(dz + i, n), mnv = Vec::loadu(mnb + i, n), den = Vec(knh) * mnv;
            const Vec D = at::vec::maximum(den, Vec(EPS));
            (dK / D).store(dz + i, n);
            // clamp_min passes the gradient where den >= eps; |M(i)| = 0 passes none to M(i)
            const Vec dden = Vec::blendv(Vec(0.f), (Vec(0.f) - dK) * Vec::loadu(Kp + o + i, n) / D, den >= Vec(EPS));
            dkn = at::vec::fmadd(dden, mnv, dkn);
            const Vec f = Vec::blendv(Vec(0.f), dden * Vec(knh) / at::vec::maximum(mnv, Vec(TINY)), mnv > Vec(0.f));
            (Vec::loadu(fm + i, n) + f).store(fm + i, n);
          });
          const float dknh = at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, dkn);
          if (knh > 0.f) axpy(dknh / knh, a + d.o_key + h * W, da + d.o_key + h * W, W);
        }
#define CONTENT(NB) content_backward<NB>(d, Mb, a, da, fm + 3 * N, 3 * N, fm, dMb)
        BY_BLOCKS(W, CONTENT)
#undef CONTENT
        // Activations and the clip, back to the raw interface vector.
        const float* raw = xi + tb * d.P;
        at::vec::map2([](Vec y, Vec gr) { return gr * (Vec(1.f) - y * y); }, da + d.o_key, a + d.o_key, da + d.o_key, d.H * W);
        for (int64_t h = 0; h < H; ++h) {
          da[d.o_beta + h] *= softplus_grad(clipped(raw[d.o_beta + h], d.clip));
          da[d.o_gate + h] *= a[d.o_gate + h] * (1.f - a[d.o_gate + h]);
          da[d.o_gamma + h] *= softplus_grad(clipped(raw[d.o_gamma + h], d.clip));
          softmax_backward(a + d.o_shift + h * S, da + d.o_shift + h * S, S);
        }
        at::vec::map2([](Vec y, Vec gr) { return gr * y * (Vec(1.f) - y); }, da + d.o_erase, a + d.o_erase, da + d.o_erase, d.Hw * W);
        at::vec::map2([](Vec y, Vec gr) { return gr * (Vec(1.f) - y * y); }, da + d.o_add, a + d.o_add, da + d.o_add, d.Hw * W);
        for (int64_t p = 0; p < d.P; ++p)
          if (!passes(raw[p], d.clip)) da[p] = 0.f;
      }
    });
    // dL/dh_t: output layer + interface + step t+1's controller input.
    at::add_out(dh, dHR[t].narrow(1, 0, C), dh_next);
    dh.addmm_(dXI[t], WiC);
    for (int64_t b = 0; b < B; ++b) {  // LSTM cell
      const int64_t tb = t * B + b;
      const float *G_ = g + tb * 4 * C, *cp = cs + tb * C, *tcb = tc + tb * C, *dhb = dhp + b * C;
      float *dG = dgp + tb * 4 * C, *dcb = dcp + b * C;
      blocks(C, [&](int64_t j, int64_t n) {
        const Vec i_ = Vec::loadu(G_ + j, n), f_ = Vec::loadu(G_ + C + j, n), o_ = Vec::loadu(G_ + 2 * C + j, n),
                  g_ = Vec::loadu(G_ + 3 * C + j, n), tn = Vec::loadu(tcb + j, n), dhv = Vec::loadu(dhb + j, n), one(1.f);
        const Vec dcn = Vec::loadu(dcb + j, n) + dhv * o_ * (one - tn * tn);
        (dcn * g_ * i_ * (one - i_)).store(dG + j, n);
        (dcn * Vec::loadu(cp + j, n) * f_ * (one - f_)).store(dG + C + j, n);
        (dhv * tn * o_ * (one - o_)).store(dG + 2 * C + j, n);
        (dcn * i_ * (one - g_ * g_)).store(dG + 3 * C + j, n);
        (dcn * f_).store(dcb + j, n);  // becomes dL/dc_{t-1}
      });
    }
    at::mm_out(dZ, dGP[t], WcC);
    dr.copy_(dZ.narrow(1, I, RW));
    dh_next.copy_(dZ.narrow(1, I + RW, C));
  }
  auto dWc = at::mm(dGP.view({T * B, 4 * C}).t(), Z.view({T * B, d.Z}));
  auto dbc = dGP.sum({0, 1});
  auto dWi = at::mm(dXI.view({T * B, d.P}).t(), HR.view({T * B, HR_}).narrow(1, 0, C));
  auto dbi = dXI.sum({0, 1});
  return {dh_next, dc, dM, dr.view({B, R, W}), dw, dWc, dbc, dWi, dbi, dWo, dbo};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &ntm_forward, "NTM sequence forward (memrepro)");
  m.def("backward", &ntm_backward, "NTM sequence backward (memrepro)");
}
