// A whole NTM sequence, forward and backward, as one native call each (memrepro.models.ntm_native).
//
// The same model as memrepro/models/ntm.py with a one-layer LSTM controller: NTM eqs. 2-9
// (Graves et al. 2014), activations and clipping as documented there. On CPU a step of these
// small models is ~100 tiny tensor operations, and the time goes to dispatching them, not to
// arithmetic; here a step is four matrix products (MKL, through ATen) and plain loops. The
// backward pass is derived by hand (docs/models/ntm.md, "Native kernel") and checked against
// autograd on the Python model by tests/test_native_kernels.py.
//
// Layout: time-major buffers [T, B, ...] so that one step is a contiguous block; memory as
// [W, N] (native_common.h), transposed from and to the Python model's [N, W]. Shapes: B batch, T steps, I inputs, C controller
// units, N slots, W width, R read heads, H heads (read heads first), S = 2r+1 shifts, O outputs.
#include "native_common.h"

using namespace memrepro_native;

namespace {

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

struct Dims {
  int64_t B, T, I, C, N, W, R, H, Hw, S, O, P, Z;
  float clip;  // <= 0: no clipping
  bool sharpen;  // false: gamma = 1 (eq. 9 off), its interface rows get no gradient
  // Interface offsets (ntm.py: keys | beta | gate | shift | gamma | erase | add).
  int64_t o_key = 0, o_beta = 0, o_gate = 0, o_shift = 0, o_gamma = 0, o_erase = 0, o_add = 0;
};

Dims dims(int64_t B, int64_t T, int64_t I, int64_t C, int64_t N, int64_t W, int64_t R, int64_t H, int64_t S, int64_t O, double clip,
          bool sharpen) {
  Dims d{B, T, I, C, N, W, R, H, H - R, S, O, 0, I + R * W + C, static_cast<float>(clip), sharpen};
  d.o_key = 0; d.o_beta = H * W; d.o_gate = d.o_beta + H; d.o_shift = d.o_gate + H;
  d.o_gamma = d.o_shift + H * S; d.o_erase = d.o_gamma + H; d.o_add = d.o_erase + d.Hw * W;
  d.P = d.o_add + d.Hw * W;
  return d;
}

// Head parameters from the raw interface row (ntm.py's activations after clipping).
void activate(const Dims& d, const float* raw, float* act) {
  const float c = d.clip;
  at::vec::map([c](Vec x) { return c > 0.f ? at::vec::clamp(x, Vec(-c), Vec(c)) : x; }, act, raw, d.P);
  at::vec::map([](Vec x) { return x.tanh(); }, act + d.o_key, act + d.o_key, d.H * d.W);
  for (int64_t h = 0; h < d.H; ++h) {
    act[d.o_beta + h] = softplus(act[d.o_beta + h]);
    act[d.o_gate + h] = sigmoid(act[d.o_gate + h]);
    act[d.o_gamma + h] = d.sharpen ? 1.f + softplus(act[d.o_gamma + h]) : 1.f;
    softmax(act + d.o_shift + h * d.S, d.S);
  }
  at::vec::map([](Vec x) { return vsigmoid(x); }, act + d.o_erase, act + d.o_erase, d.Hw * d.W);
  at::vec::map([](Vec x) { return x.tanh(); }, act + d.o_add, act + d.o_add, d.Hw * d.W);
}

// Addressing of one head (eqs. 5-9) given K = the products k . M(i): content weights (K becomes
// the cosine), interpolation, shift, sharpening.
void address(const Dims& d, const float* key, float beta, float gate, const float* shift, float gamma, const float* mnorm,
             const float* wprev, float* kn, float* K, float* wc, float* wg, float* ws, float* w) {
  const int64_t N = d.N, r = d.S / 2;
  *kn = content_weights(key, d.W, beta, mnorm, N, K, wc);
  at::vec::map2([gate](Vec c, Vec p) { return Vec(gate) * c + Vec(1.f - gate) * p; }, wg, wc, wprev, N);
  std::fill(ws, ws + N, 0.f);
  for (int64_t m = 0; m < d.S; ++m) add_rotated(shift[m], wg, ws, N, m - r);  // offsets -r..r
  at::vec::map([gamma](Vec x) { return Vec(gamma) * at::vec::maximum(x, Vec(TINY)).log(); }, w, ws, N);
  softmax(w, N);
}

}  // namespace

// Returns {y [B,T,O], h_T, c_T, M_T, r_T, w_T, saved...}.
std::vector<at::Tensor> ntm_forward(at::Tensor x, at::Tensor h0, at::Tensor c0, at::Tensor M0, at::Tensor r0, at::Tensor w0,
                                    at::Tensor Wc, at::Tensor bc, at::Tensor Wi, at::Tensor bi, at::Tensor Wo, at::Tensor bo,
                                    int64_t R, int64_t S, double clip, bool sharpen) {
  const Dims d = dims(x.size(0), x.size(1), x.size(2), h0.size(1), M0.size(1), M0.size(2), R, w0.size(1), S, Wo.size(0), clip, sharpen);
  const int64_t B = d.B, T = d.T, C = d.C, N = d.N, W = d.W, H = d.H, RW = R * W, HR_ = C + RW;
  auto opt = x.options();
  static std::vector<at::Tensor> pool;  // the previous sequences' buffers, once released
  auto Z = workspace(pool, 0, {T, B, d.Z}, opt);         // controller inputs [x, r_{t-1}, h_{t-1}]
  auto G = workspace(pool, 1, {T, B, 4 * C}, opt);       // gate activations (i, f, o sigmoid; g tanh)
  auto Cs = workspace(pool, 2, {T + 1, B, C}, opt);      // cell states c_0 .. c_T
  auto TC = workspace(pool, 3, {T, B, C}, opt);          // tanh(c_t)
  auto XI = workspace(pool, 4, {T, B, d.P}, opt);        // raw interface vectors
  auto ACT = workspace(pool, 5, {T, B, d.P}, opt);       // head parameters after activation
  auto Mem = workspace(pool, 6, {T + 1, B, W, N}, opt);  // M_0 .. M_T, each [W, N] (native_common.h)
  auto MN = workspace(pool, 7, {T, B, N}, opt);          // |M_{t-1}(i)|
  auto KN = workspace(pool, 8, {T, B, H}, opt);          // |k|
  auto K = workspace(pool, 9, {T, B, H, N}, opt);        // cosine similarities (eq. 6)
  auto WCt = workspace(pool, 10, {T, B, H, N}, opt);     // content weights (eq. 5)
  auto WG = workspace(pool, 11, {T, B, H, N}, opt);      // interpolated (eq. 7)
  auto WS = workspace(pool, 12, {T, B, H, N}, opt);      // shifted (eq. 8)
  auto WT = workspace(pool, 13, {T + 1, B, H, N}, opt);  // sharpened (eq. 9): w_0 .. w_T
  auto HR = workspace(pool, 14, {T, B, HR_}, opt);       // output layer's input [h_t, r_t]
  const ControllerWeights cw{Wc, bc};  // an LSTM's (native_common.h)
  auto gates = gate_scratch(cw, B, C, opt);
  Cs[0].copy_(c0); Mem[0].copy_(M0.transpose(1, 2)); WT[0].copy_(w0);
  Z.narrow(2, 0, d.I).copy_(x.transpose(0, 1));
  Z[0].narrow(1, d.I, RW).copy_(r0.reshape({B, RW}));
  Z[0].narrow(1, d.I + RW, C).copy_(h0);
  float *z = Z.data_ptr<float>(), *xi = XI.data_ptr<float>(), *act = ACT.data_ptr<float>(), *mem = Mem.data_ptr<float>(), *mn = MN.data_ptr<float>(),
        *kn = KN.data_ptr<float>(), *Kp = K.data_ptr<float>(), *wc = WCt.data_ptr<float>(), *wg = WG.data_ptr<float>(),
        *ws = WS.data_ptr<float>(), *wt = WT.data_ptr<float>(), *hr = HR.data_ptr<float>();

  for (int64_t t = 0; t < T; ++t) {
    controller_forward_step(t, C, Z, cw, Wi, bi, gates, G, Cs, TC, HR, XI);
    for_each_sequence(B, [&](int64_t b) {
      const int64_t tb = t * B + b;
      float* a = act + tb * d.P;
      activate(d, xi + tb * d.P, a);
      const float* Mb = mem + tb * N * W;
      float* mnb = mn + tb * N;
      norms_and_products(N, W, Mb, H, a + d.o_key, W, mnb, Kp + tb * H * N, N);
      float* wnew = wt + (tb + B) * H * N;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t o = (tb * H + h) * N;
        address(d, a + d.o_key + h * W, a[d.o_beta + h], a[d.o_gate + h], a + d.o_shift + h * S, a[d.o_gamma + h], mnb,
                wt + o, kn + tb * H + h, Kp + o, wc + o, wg + o, ws + o, wnew + h * N);
      }
      // Reads of M_{t-1} (eq. 2), then the write (eqs. 3-4).
      float* rd = hr + tb * HR_ + C;
      read(N, W, Mb, R, wnew, rd);
      if (t + 1 < T) {  // the next step's controller input: [x, r_t, h_t]
        float* zn = z + (tb + B) * d.Z;
        std::copy(rd, rd + RW, zn + d.I);
        std::copy(hr + tb * HR_, hr + tb * HR_ + C, zn + d.I + RW);
      }
      float* Mn = mem + (tb + B) * N * W;
      if (d.Hw == 1) {
        write(N, W, Mb, wnew + R * N, a + d.o_erase, a + d.o_add, Mn);
      } else {  // erasures multiply head by head, then the additions sum
        std::copy(Mb, Mb + N * W, Mn);
        for (int64_t h = 0; h < d.Hw; ++h)
          for (int64_t j = 0; j < W; ++j)
            for (int64_t i = 0; i < N; ++i) Mn[j * N + i] *= 1.f - wnew[(R + h) * N + i] * a[d.o_erase + h * W + j];
        for (int64_t h = 0; h < d.Hw; ++h)
          for (int64_t j = 0; j < W; ++j) axpy(a[d.o_add + h * W + j], wnew + (R + h) * N, Mn + j * N, N);
      }
    });
  }
  auto [YP, y] = outputs(HR, Wo, bo, d.clip);
  // The final state as copies: the buffers are reused once released.
  auto hT = HR[T - 1].narrow(1, 0, C).clone();
  auto rT = HR[T - 1].narrow(1, C, RW).reshape({B, R, W}).clone();
  return {y, hT, Cs[T].clone(), Mem[T].transpose(1, 2).contiguous(), rT, WT[T].clone(),
          Z, G, Cs, TC, XI, ACT, Mem, MN, KN, K, WCt, WG, WS, WT, HR, YP};
}

// Gradients of a sequence's loss given dL/dy: {dh0, dc0, dM0, dr0, dw0, dWc, dbc, dWi, dbi, dWo, dbo}.
std::vector<at::Tensor> ntm_backward(at::Tensor dy, std::vector<at::Tensor> saved, at::Tensor Wc, at::Tensor Wi, at::Tensor Wo,
                                     int64_t I, int64_t R, int64_t S, double clip, bool sharpen) {
  auto Z = saved[0], G = saved[1], Cs = saved[2], TC = saved[3], XI = saved[4], ACT = saved[5], Mem = saved[6], MN = saved[7],
       KN = saved[8], K = saved[9], WCt = saved[10], WG = saved[11], WS = saved[12], WT = saved[13], HR = saved[14], YP = saved[15];
  const Dims d = dims(Z.size(1), Z.size(0), I, Cs.size(2), Mem.size(3), Mem.size(2), R, WT.size(2), S, Wo.size(0), clip, sharpen);
  const int64_t B = d.B, T = d.T, C = d.C, N = d.N, W = d.W, H = d.H, r = S / 2, RW = R * W, HR_ = C + RW;
  auto opt = Z.options();

  const auto out = outputs_backward(dy, YP, HR, Wo, d.clip);
  const auto& dHR = out[0];
  auto dXI = at::empty({T, B, d.P}, opt);     // per step, for dWi in one product at the end
  const ControllerWeights cw{Wc, at::Tensor()};  // an LSTM's; the backward reads no bias
  auto [dGP, dZ] = controller_grad_buffers(cw, T, B, C, d.Z, opt);  // dGP per step, for dWc in one product
  auto dh = at::empty({B, C}, opt);
  auto dc = at::zeros({B, C}, opt);
  auto dM = at::zeros({B, W, N}, opt);         // dL/dM_t, carried backwards
  auto dr = at::zeros({B, RW}, opt);           // dL/dr_t: step t+1's part on entry, the output layer's added here
  auto dh_next = at::zeros({B, C}, opt);       // dL/dh_t from step t+1's controller input
  auto dw = at::zeros({B, H, N}, opt);         // dL/dw_t from step t+1's interpolation
  auto scratch = at::empty({B, 3 * H + 1, N}, opt);  // fm, then per head: dws, dwg, dz (ddot)
  auto erased = at::empty({d.Hw > 1 ? B * N * W : 1}, opt);  // several write heads: M_{t-1} partly erased
  const float *xi = XI.data_ptr<float>(), *act = ACT.data_ptr<float>(), *mem = Mem.data_ptr<float>(), *mn = MN.data_ptr<float>(), *kn = KN.data_ptr<float>(),
              *Kp = K.data_ptr<float>(), *wc = WCt.data_ptr<float>(), *wg = WG.data_ptr<float>(), *ws = WS.data_ptr<float>(),
              *wt = WT.data_ptr<float>(), *dhr = dHR.data_ptr<float>();
  float *dxi = dXI.data_ptr<float>(), *dMp = dM.data_ptr<float>(), *dwp = dw.data_ptr<float>(),
        *drp = dr.data_ptr<float>(), *sc = scratch.data_ptr<float>(), *er = erased.data_ptr<float>();

  for (int64_t t = T - 1; t >= 0; --t) {
    for_each_sequence(B, [&](int64_t b) {
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
      if (d.Hw == 1) {
        write_backward(N, W, Mb, w + R * N, a + d.o_erase, a + d.o_add, dMb, dwb + R * N, da + d.o_erase, da + d.o_add);
      } else {  // several write heads: additions, then erasures in reverse head order
        for (int64_t h = 0; h < d.Hw; ++h)
          for (int64_t j = 0; j < W; ++j) {
            da[d.o_add + h * W + j] += dot(dMb + j * N, w + (R + h) * N, N);
            axpy(a[d.o_add + h * W + j], dMb + j * N, dwb + (R + h) * N, N);
          }
        float* Me = er + b * N * W;  // M_{t-1} after erasing heads < h, recomputed
        for (int64_t h = d.Hw - 1; h >= 0; --h) {
          std::copy(Mb, Mb + N * W, Me);
          for (int64_t h2 = 0; h2 < h; ++h2)
            for (int64_t j = 0; j < W; ++j)
              for (int64_t i = 0; i < N; ++i) Me[j * N + i] *= 1.f - w[(R + h2) * N + i] * a[d.o_erase + h2 * W + j];
          const float *ww = w + (R + h) * N, *e = a + d.o_erase + h * W;
          for (int64_t j = 0; j < W; ++j)
            for (int64_t i = 0; i < N; ++i) {
              const float gm = dMb[j * N + i], m = Me[j * N + i];
              dwb[(R + h) * N + i] -= gm * m * e[j];
              da[d.o_erase + h * W + j] -= gm * m * ww[i];
              dMb[j * N + i] = gm * (1.f - ww[i] * e[j]);
            }
        }
      }
      read_backward(N, W, Mb, R, w, drb, dwb, dMb);  // reads of M_{t-1}
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
        da[d.o_beta + h] = content_backward(a + d.o_key + h * W, W, beta, kn[tb * H + h], mn + tb * N, N, Kp + o, wc + o, dz, fm,
                                            da + d.o_key + h * W);  // dz becomes ddot
      }
      content_memory_backward(N, W, Mb, H, a + d.o_key, W, da + d.o_key, W, fm + 3 * N, 3 * N, fm, dMb);
      // Activations and the clip, back to the raw interface vector.
      const float* raw = xi + tb * d.P;
      at::vec::map2([](Vec y, Vec gr) { return gr * (Vec(1.f) - y * y); }, da + d.o_key, a + d.o_key, da + d.o_key, d.H * W);
      for (int64_t h = 0; h < H; ++h) {
        da[d.o_beta + h] *= softplus_grad(clipped(raw[d.o_beta + h], d.clip));
        da[d.o_gate + h] *= a[d.o_gate + h] * (1.f - a[d.o_gate + h]);
        da[d.o_gamma + h] *= d.sharpen ? softplus_grad(clipped(raw[d.o_gamma + h], d.clip)) : 0.f;
        softmax_backward(a + d.o_shift + h * S, da + d.o_shift + h * S, S);
      }
      at::vec::map2([](Vec y, Vec gr) { return gr * y * (Vec(1.f) - y); }, da + d.o_erase, a + d.o_erase, da + d.o_erase, d.Hw * W);
      at::vec::map2([](Vec y, Vec gr) { return gr * (Vec(1.f) - y * y); }, da + d.o_add, a + d.o_add, da + d.o_add, d.Hw * W);
      for (int64_t p = 0; p < d.P; ++p)
        if (!passes(raw[p], d.clip)) da[p] = 0.f;
    });
    controller_backward_step(t, I, C, dHR, dXI, Wi, cw, Z, G, Cs, TC, dh, dc, dGP, dZ, dr, dh_next);
  }
  const auto w = controller_weight_grads(cw, dGP, Z, dXI, HR, C);
  return {dh_next, dc, dM.transpose(1, 2).contiguous(), dr.view({B, R, W}), dw, w[0], w[1], w[2], w[3], out[1], out[2]};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &ntm_forward, "NTM sequence forward (memrepro)");
  m.def("backward", &ntm_backward, "NTM sequence backward (memrepro)");
}
