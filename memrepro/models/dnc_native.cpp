// A whole DNC sequence, forward and backward, as one native call each (memrepro.models.dnc_native).
//
// The same model as memrepro/models/dnc.py with a one-layer LSTM or GRU controller and one write head
// (Graves et al. 2016, Methods): retention and usage, sort-based allocation, write weighting,
// erase/add write, temporal link matrix and precedence, forward/backward/content read modes.
// The backward pass is derived by hand (docs/models/dnc.md, "Native kernel") and checked
// against autograd on the Python model by tests/test_native_kernels.py.
//
// Layout: time-major buffers [T, B, ...]; memory as [W, N] (native_common.h), transposed from
// and to the Python model's [N, W]; the link matrix [N, N] as in the Python model. Shapes: B batch, T steps, I inputs, C controller units,
// N slots, W width, R read heads, O outputs.
#include "native_common.h"

#include <c10/util/bit_cast.h>
#include <type_traits>

using namespace memrepro_native;

namespace {

struct Dims {
  int64_t B, T, I, C, N, W, R, O, P, Z;
  float clip;  // <= 0: no clipping
  // Interface offsets (dnc.py: read keys | read strengths | write key | write strength | erase |
  // write vector | free gates | allocation gate | write gate | read modes).
  int64_t o_rkey = 0, o_rstr = 0, o_wkey = 0, o_wstr = 0, o_erase = 0, o_wvec = 0, o_free = 0, o_ag = 0, o_wg = 0, o_modes = 0;
};

Dims dims(int64_t B, int64_t T, int64_t I, int64_t C, int64_t N, int64_t W, int64_t R, int64_t O, double clip) {
  Dims d{B, T, I, C, N, W, R, O, 0, I + R * W + C, static_cast<float>(clip)};
  d.o_rkey = 0; d.o_rstr = R * W; d.o_wkey = d.o_rstr + R; d.o_wstr = d.o_wkey + W; d.o_erase = d.o_wstr + 1;
  d.o_wvec = d.o_erase + W; d.o_free = d.o_wvec + W; d.o_ag = d.o_free + R; d.o_wg = d.o_ag + 1; d.o_modes = d.o_wg + 1;
  d.P = d.o_modes + 3 * R;
  return d;
}

// Interface activations (dnc.py): keys and write vector raw, strengths oneplus, gates sigmoid,
// read modes softmax, all after clipping.
void activate(const Dims& d, const float* raw, float* act) {
  for (int64_t p = 0; p < d.P; ++p) act[p] = clipped(raw[p], d.clip);
  for (int64_t r = 0; r < d.R; ++r) act[d.o_rstr + r] = 1.f + softplus(act[d.o_rstr + r]);
  act[d.o_wstr] = 1.f + softplus(act[d.o_wstr]);
  for (int64_t j = 0; j < d.W; ++j) act[d.o_erase + j] = sigmoid(act[d.o_erase + j]);
  for (int64_t r = 0; r < d.R; ++r) act[d.o_free + r] = sigmoid(act[d.o_free + r]);
  act[d.o_ag] = sigmoid(act[d.o_ag]);
  act[d.o_wg] = sigmoid(act[d.o_wg]);
  for (int64_t r = 0; r < d.R; ++r) softmax(act + d.o_modes + 3 * r, 3);
}

// f(std::integral_constant<int, H>) for a chunk of H = 1..4 read heads: the link passes below keep
// each head's accumulators in registers, which a run-time count does not (measured: it spilled).
constexpr int64_t HEAD_CHUNK = 4;
template <typename F>
void with_heads(int64_t H, const F& f) {
  switch (H) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, HEAD_CHUNK>{});
  }
}

// v with lane `lane` set to 0 (the link matrix's diagonal).
C10_ALWAYS_INLINE Vec zero_lane(const Vec& v, int64_t lane) {
  return Vec::blendv(v, Vec(0.f), Vec::arange(0.f, 1.f) == Vec(static_cast<float>(lane)));
}

// The link sweeps below take RB rows at a time so that the per-column vectors (write weights,
// precedence, read weights and their gradients) are loaded and stored once per RB rows: one row
// at a time they were load/store bound (~6 cycles per vector forward, ~15 backward, measured).
// Rows are prefetched this far ahead: the RB interleaved row streams defeat the hardware
// prefetcher (the backward sweep streamed from memory: 13.4 -> 7.0 us per 128 x 128 matrix). Past
// the last row it prefetches whatever follows, which never faults.
constexpr int64_t PREFETCH_ROWS = 8;
template <int H>
constexpr int ROW_BLOCK = H <= 2 ? 4 : 2;  // with the heads' accumulators, within 32 registers

// Rows [i, i + RB) of one sweep over the link matrix for H read heads wr [H, N]: the directional
// weights f = L wr (into fw) and b = L^T wr (added to bw, zeroed by the caller); with Update, the
// same sweep first computes L_t[i, j] = (1 - ww_i - ww_j) L_{t-1}[i, j] + ww_i p_{t-1}[j], L_t[i, i] = 0.
template <int H, int RB, bool Update>
C10_ALWAYS_INLINE void link_forward_rows(int64_t i, int64_t N, const float* Lp, const float* pprev, const float* ww, float* L,
                                         const float* wr, float* fw, float* bw) {
  Vec acc[RB][H];
  for (int r = 0; r < RB; ++r)
    for (int h = 0; h < H; ++h) acc[r][h] = Vec(0.f);
  blocks(N, [&](int64_t j, int64_t n) {
    Vec l[RB];
    if constexpr (Update) {
      const Vec keep = Vec(1.f) - Vec::loadu(ww + j, n), pj = Vec::loadu(pprev + j, n);
      for (int r = 0; r < RB; ++r) {
        const int64_t row = i + r;
        const Vec wi(ww[row]);
        __builtin_prefetch(Lp + (row + PREFETCH_ROWS) * N + j);
        __builtin_prefetch(L + (row + PREFETCH_ROWS) * N + j, 1);
        l[r] = at::vec::fmadd(keep - wi, Vec::loadu(Lp + row * N + j, n), wi * pj);
        if (row >= j && row < j + n) l[r] = zero_lane(l[r], row - j);
        l[r].store(L + row * N + j, n);
      }
    } else {
      for (int r = 0; r < RB; ++r) l[r] = Vec::loadu(L + (i + r) * N + j, n);
    }
    for (int h = 0; h < H; ++h) {
      const Vec w = Vec::loadu(wr + h * N + j, n);
      Vec bv = Vec::loadu(bw + h * N + j, n);
      for (int r = 0; r < RB; ++r) {
        acc[r][h] = at::vec::fmadd(l[r], w, acc[r][h]);
        bv = at::vec::fmadd(Vec(wr[h * N + i + r]), l[r], bv);
      }
      bv.store(bw + h * N + j, n);
    }
  });
  for (int r = 0; r < RB; ++r)
    for (int h = 0; h < H; ++h) fw[h * N + i + r] = sum(acc[r][h]);
}

template <int H, bool Update>
void link_forward(int64_t N, const float* Lp, const float* pprev, const float* ww, float* L, const float* wr, float* fw, float* bw) {
  constexpr int RB = ROW_BLOCK<H>;
  int64_t i = 0;
  for (; i + RB <= N; i += RB) link_forward_rows<H, RB, Update>(i, N, Lp, pprev, ww, L, wr, fw, bw);
  for (; i < N; ++i) link_forward_rows<H, 1, Update>(i, N, Lp, pprev, ww, L, wr, fw, bw);
}

// Rows [i, i + RB) of the backward of `link_forward`. For H heads with gf, gb = dL/df, dL/db:
// dL += gf (x) wr + wr (x) gb and gwr += L^T gf + L gb (L = L_t); with Finish, the same sweep
// then runs the link update's backward on dL (its diagonal zeroed): dww_k += sum_j dL_kj
// (p_{t-1,j} - L_{t-1,kj}) - sum_i dL_ik L_{t-1,ik}, gpl_j += sum_i dL_ij ww_i, and dL becomes
// dL/dL_{t-1} = dL (1 - ww_i - ww_j). L_t is recomputed from L_{t-1} as the forward sweep computed
// it (bit for bit), not read: the sweep then streams two matrices, not three. Ls is the stored one:
// L_{t-1}, or with Odd (odd t - 1, not kept: `Links`) L_{t-2}, from which L_{t-1} is recomputed
// in turn with `prev`.
struct Before {  // the write weights and precedence that made L_{t-1} of L_{t-2}
  const float *ww, *p;
};

template <int H, int RB, bool Finish, bool Odd>
C10_ALWAYS_INLINE void link_backward_rows(int64_t i, int64_t N, const float* Ls, const Before& prev, const float* pprev, const float* ww,
                                          const float* wr, const float* gf, const float* gb, float* gL, float* gwr, float* gww,
                                          float* gpl) {
  Vec acc[RB][H], gwi[RB];
  for (int r = 0; r < RB; ++r) {
    gwi[r] = Vec(0.f);
    for (int h = 0; h < H; ++h) acc[r][h] = Vec(0.f);
  }
  blocks(N, [&](int64_t j, int64_t n) {
    Vec wrj[H], gbj[H], gwrj[H];
    for (int h = 0; h < H; ++h) {
      wrj[h] = Vec::loadu(wr + h * N + j, n);
      gbj[h] = Vec::loadu(gb + h * N + j, n);
      gwrj[h] = Vec::loadu(gwr + h * N + j, n);
    }
    const Vec keep = Vec(1.f) - Vec::loadu(ww + j, n), pj = Vec::loadu(pprev + j, n);
    Vec keep2, pj2;
    if constexpr (Odd) keep2 = Vec(1.f) - Vec::loadu(prev.ww + j, n), pj2 = Vec::loadu(prev.p + j, n);
    Vec gwwj, gplj;
    if constexpr (Finish) gwwj = Vec::loadu(gww + j, n), gplj = Vec::loadu(gpl + j, n);
    for (int r = 0; r < RB; ++r) {
      const int64_t row = i + r;
      __builtin_prefetch(Ls + (row + PREFETCH_ROWS) * N + j);
      __builtin_prefetch(gL + (row + PREFETCH_ROWS) * N + j);
      const bool diagonal = row >= j && row < j + n;
      Vec lp = Vec::loadu(Ls + row * N + j, n);
      if constexpr (Odd) {  // L_{t-1} from L_{t-2}, as link_forward_rows computed it
        const Vec wi2(prev.ww[row]);
        lp = at::vec::fmadd(keep2 - wi2, lp, wi2 * pj2);
        if (diagonal) lp = zero_lane(lp, row - j);
      }
      const Vec wi(ww[row]);
      Vec l = at::vec::fmadd(keep - wi, lp, wi * pj);  // L_t, as link_forward_rows
      if (diagonal) l = zero_lane(l, row - j);
      Vec g = Vec::loadu(gL + row * N + j, n);
      for (int h = 0; h < H; ++h) {
        const Vec gfi(gf[h * N + row]);
        g = at::vec::fmadd(gfi, wrj[h], at::vec::fmadd(Vec(wr[h * N + row]), gbj[h], g));
        acc[r][h] = at::vec::fmadd(l, gbj[h], acc[r][h]);
        gwrj[h] = at::vec::fmadd(gfi, l, gwrj[h]);
      }
      if constexpr (Finish) {
        if (diagonal) g = zero_lane(g, row - j);
        gwi[r] = at::vec::fmadd(g, pj - lp, gwi[r]);
        gwwj = at::vec::fnmadd(g, lp, gwwj);
        gplj = at::vec::fmadd(g, wi, gplj);
        g = g * (keep - wi);
      }
      g.store(gL + row * N + j, n);
    }
    for (int h = 0; h < H; ++h) gwrj[h].store(gwr + h * N + j, n);
    if constexpr (Finish) {
      gwwj.store(gww + j, n);
      gplj.store(gpl + j, n);
    }
  });
  for (int r = 0; r < RB; ++r) {
    for (int h = 0; h < H; ++h) gwr[h * N + i + r] += sum(acc[r][h]);
    if constexpr (Finish) gww[i + r] += sum(gwi[r]);
  }
}

template <int H, bool Finish, bool Odd>
void link_backward(int64_t N, const float* Ls, const Before& prev, const float* pprev, const float* ww, const float* wr, const float* gf,
                   const float* gb, float* gL, float* gwr, float* gww, float* gpl) {
  constexpr int RB = ROW_BLOCK<H>;
  int64_t i = 0;
  for (; i + RB <= N; i += RB) link_backward_rows<H, RB, Finish, Odd>(i, N, Ls, prev, pprev, ww, wr, gf, gb, gL, gwr, gww, gpl);
  for (; i < N; ++i) link_backward_rows<H, 1, Finish, Odd>(i, N, Ls, prev, pprev, ww, wr, gf, gb, gL, gwr, gww, gpl);
}

// Where L_s of sequence b lives in the link buffer [T / 2 + 2, B, N, N]: even s at [s / 2] (kept
// for the backward pass), odd s in the last slot until the next step overwrites it (the backward
// pass recomputes it from L_{s-1}). Half the matrices written and read back: at batch 32 they
// are most of the kernel's memory traffic (86 MB per update for all of them).
struct Links {
  float* base;
  int64_t B, NN, odd_slot;
  float* operator()(int64_t s, int64_t b) const { return base + ((s % 2 ? odd_slot : s / 2) * B + b) * NN; }
};

// Per (t, b) buffers of the forward pass, as pointers into the saved tensors.
struct Saved {
  float *z, *g, *cs, *tc, *xi, *act, *mem, *mn, *u, *psi, *kw, *cw, *kwn, *su, *pp, *alloc, *ww, *link, *prec, *fw, *bw, *kr,
      *cr, *krn, *wr, *hr;
  int64_t* order;
};

Saved pointers(const std::vector<at::Tensor>& t) {  // t in the order dnc_forward allocates them
  Saved v{};
  float** fields[] = {&v.z, &v.g, &v.cs, &v.tc, &v.xi, &v.act, &v.mem, &v.mn, &v.u, &v.psi, &v.kw, &v.cw, &v.kwn, &v.su, &v.pp,
                      &v.alloc, &v.ww, &v.link, &v.prec, &v.fw, &v.bw, &v.kr, &v.cr, &v.krn, &v.wr, &v.hr};
  for (size_t k = 0; k < 26; ++k) *fields[k] = t[k].data_ptr<float>();
  v.order = t[26].data_ptr<int64_t>();
  return v;
}

}  // namespace

// cw: the controller's weights (native_common.h, ControllerWeights).
std::vector<at::Tensor> dnc_forward(at::Tensor x, ControllerWeights cw, at::Tensor Wi, at::Tensor bi, at::Tensor Wo, at::Tensor bo,
                                    int64_t C, int64_t N, int64_t W, int64_t R, double clip) {
  const Dims d = dims(x.size(0), x.size(1), x.size(2), C, N, W, R, Wo.size(0), clip);
  const int64_t B = d.B, T = d.T, RW = R * W, HR_ = C + RW;
  auto opt = x.options();
  static std::vector<at::Tensor> pool;  // the previous sequences' buffers, once released
  std::vector<at::Tensor> t = {
      workspace(pool, 0, {T, B, d.Z}, opt),          // 0 Z: controller inputs [x, r_{t-1}, h_{t-1}]
      workspace(pool, 1, {T, B, 4 * C}, opt),        // 1 G: gate activations (native_common.h)
      workspace(pool, 2, {T + 1, B, C}, opt),         // 2 Cs: cell states (LSTM)
      workspace(pool, 3, {T, B, C}, opt),            // 3 TC: tanh(c_t) (LSTM)
      workspace(pool, 4, {T, B, d.P}, opt),          // 4 XI: raw interface
      workspace(pool, 5, {T, B, d.P}, opt),          // 5 ACT: interface after activation
      workspace(pool, 6, {T + 1, B, W, N}, opt),     // 6 Mem: M_0 .. M_T, each [W, N] (native_common.h)
      workspace(pool, 7, {T + 1, B, N}, opt),        // 7 MN: |M_t(i)|
      workspace(pool, 8, {T + 1, B, N}, opt),        // 8 U: usage u_0 .. u_T
      workspace(pool, 9, {T, B, N}, opt),            // 9 PSI: retention
      workspace(pool, 10, {T, B, N}, opt),            // 10 KW: write-key cosine
      workspace(pool, 11, {T, B, N}, opt),            // 11 CW: write content weights
      workspace(pool, 12, {T, B}, opt),               // 12 KWN: |write key|
      workspace(pool, 13, {T, B, N}, opt),            // 13 SU: sorted usage (eps-mapped)
      workspace(pool, 14, {T, B, N}, opt),            // 14 PP: exclusive cumulative products of SU
      workspace(pool, 15, {T, B, N}, opt),            // 15 A: allocation weights
      workspace(pool, 16, {T + 1, B, N}, opt),        // 16 WW: write weights
      workspace(pool, 17, {T / 2 + 2, B, N, N}, opt),  // 17 L: link matrices, even steps' and the last odd one (Links)
      workspace(pool, 18, {T + 1, B, N}, opt),        // 18 PR: precedence
      workspace(pool, 19, {T, B, R, N}, opt),         // 19 F: forward weights
      workspace(pool, 20, {T, B, R, N}, opt),         // 20 BW: backward weights
      workspace(pool, 21, {T, B, R, N}, opt),         // 21 KR: read-key cosines
      workspace(pool, 22, {T, B, R, N}, opt),         // 22 CR: read content weights
      workspace(pool, 23, {T, B, R}, opt),            // 23 KRN: |read keys|
      workspace(pool, 24, {T + 1, B, R, N}, opt),     // 24 WR: read weights
      workspace(pool, 25, {T, B, HR_}, opt),          // 25 HR: output layer input [h_t, r_t]
      workspace(pool, 26, {T, B, N}, opt.dtype(at::kLong)),  // 26 ORDER: slots by ascending usage
  };
  // Everything starts at zero, as dnc.py's initial_state: index 0 of the [T + 1] buffers.
  for (int k : {2, 6, 7, 8, 16, 17, 18, 24}) t[k][0].zero_();
  t[0][0].zero_();
  t[0].narrow(2, 0, d.I).copy_(x.transpose(0, 1));
  const Saved v = pointers(t);
  const Links link{v.link, B, N * N, T / 2 + 1};
  auto gates = gate_scratch(cw, B, C, opt);
  auto HR = t[25], XI = t[4], Z = t[0];

  for (int64_t s = 0; s < T; ++s) {
    controller_forward_step(s, C, Z, cw, Wi, bi, gates, t[1], t[2], t[3], HR, XI);
    for_each_sequence(B, [&](int64_t b) {
      const int64_t sb = s * B + b, nb = sb + B;  // this step's and the next state's (t + 1) index
      float* a = v.act + sb * d.P;
      activate(d, v.xi + sb * d.P, a);
      const float *Mp = v.mem + sb * N * W, *wrp = v.wr + sb * R * N, *wwp = v.ww + sb * N, *up = v.u + sb * N;
      float *M = v.mem + nb * N * W, *wr = v.wr + nb * R * N, *ww = v.ww + nb * N, *u = v.u + nb * N;
      // Retention and usage (write weights not differentiated, as DeepMind's).
      float* psi = v.psi + sb * N;
      for (int64_t i = 0; i < N; ++i) {
        float keep = 1.f;
        for (int64_t r = 0; r < R; ++r) keep *= 1.f - a[d.o_free + r] * wrp[r * N + i];
        psi[i] = keep;
        u[i] = (up[i] + wwp[i] - up[i] * wwp[i]) * keep;
      }
      // Write content lookup on M_{t-1}, whose norms the previous step's read lookup left in MN[t]
      // (M_0's: zero).
      float *kw = v.kw + sb * N, *cw = v.cw + sb * N, *mnp = v.mn + sb * N;
      norms_and_products(N, W, Mp, 1, a + d.o_wkey, W, nullptr, kw, N);
      v.kwn[sb] = content_weights(a + d.o_wkey, W, a[d.o_wstr], mnp, N, kw, cw);
      // Allocation: slots by ascending usage (stable), a[phi_j] = (1 - s_j) prod_{i<j} s_i.
      int64_t* order = v.order + sb * N;
      float *su = v.su + sb * N, *pp = v.pp + sb * N, *alloc = v.alloc + sb * N;
      // Sorted as 64-bit keys, the usage's bits above the slot index (positive floats order as
      // their bit patterns; ties go by index, as a stable sort's), by insertion from the previous
      // step's order: a step moves few slots, so this is ~N predictable comparisons (std::sort
      // afresh: ~3 us per sort at N = 128, mostly mispredicted branches).
      for (int64_t i = 0; i < N; ++i) su[i] = EPS + (1.f - EPS) * u[i];
      const int64_t* before = s > 0 ? v.order + (sb - B) * N : nullptr;
      for (int64_t j = 0; j < N; ++j) {
        const int64_t i = before ? before[j] : j;
        const int64_t key = static_cast<int64_t>(c10::bit_cast<uint32_t>(su[i])) << 32 | i;
        int64_t m = j;
        for (; m > 0 && order[m - 1] > key; --m) order[m] = order[m - 1];
        order[m] = key;
      }
      for (int64_t j = 0; j < N; ++j) {
        order[j] &= 0xffffffff;
        pp[j] = su[order[j]];
      }
      std::copy(pp, pp + N, su);  // su: sorted
      float prod = 1.f;
      for (int64_t j = 0; j < N; ++j) {
        pp[j] = prod;
        alloc[order[j]] = (1.f - su[j]) * prod;
        prod *= su[j];
      }
      // Write weighting and the write.
      const float ga = a[d.o_ag], gw = a[d.o_wg];
      float wsum = 0.f;
      for (int64_t i = 0; i < N; ++i) { ww[i] = gw * (ga * alloc[i] + (1.f - ga) * cw[i]); wsum += ww[i]; }
      write(N, W, Mp, ww, a + d.o_erase, a + d.o_wvec, M);
      // Link matrix, directional weights f = L wr_{t-1}, b = L^T wr_{t-1} (heads in chunks, the
      // first chunk's sweep updating L), precedence.
      const float *Lp = link(s, b), *pprev = v.prec + sb * N;
      float *L = link(s + 1, b), *p = v.prec + nb * N;
      float *fw = v.fw + sb * R * N, *bw = v.bw + sb * R * N;
      std::fill(bw, bw + R * N, 0.f);
      for (int64_t h0 = 0; h0 < R; h0 += HEAD_CHUNK)
        with_heads(std::min(HEAD_CHUNK, R - h0), [&](auto H) {
          const auto f = h0 == 0 ? link_forward<decltype(H)::value, true> : link_forward<decltype(H)::value, false>;
          f(N, Lp, pprev, ww, L, wrp + h0 * N, fw + h0 * N, bw + h0 * N);
        });
      for (int64_t i = 0; i < N; ++i) p[i] = (1.f - wsum) * pprev[i] + ww[i];
      // Read content lookups on M_t (norms of M_t into MN[t + 1]), read modes, reads.
      float *kr = v.kr + sb * R * N, *cr = v.cr + sb * R * N;
      norms_and_products(N, W, M, R, a + d.o_rkey, W, v.mn + nb * N, kr, N);
      for (int64_t r = 0; r < R; ++r) {
        v.krn[sb * R + r] = content_weights(a + d.o_rkey + r * W, W, a[d.o_rstr + r], v.mn + nb * N, N, kr + r * N, cr + r * N);
        const float* pi = a + d.o_modes + 3 * r;
        for (int64_t i = 0; i < N; ++i) wr[r * N + i] = pi[0] * bw[r * N + i] + pi[1] * cr[r * N + i] + pi[2] * fw[r * N + i];
      }
      float* rd = v.hr + sb * HR_ + C;
      read(N, W, M, R, wr, rd);
      if (s + 1 < T) {  // the next step's controller input: [x, r_t, h_t]
        float* zn = v.z + nb * d.Z;
        std::copy(rd, rd + RW, zn + d.I);
        std::copy(v.hr + sb * HR_, v.hr + sb * HR_ + C, zn + d.I + RW);
      }
    });
  }
  auto [YP, y] = outputs(HR, Wo, bo, d.clip);
  t.push_back(YP);
  t.insert(t.begin(), y);
  return t;
}

// Gradients of a sequence's loss given dL/dy: {the controller's (as cw), dWi, dbi, dWo, dbo}.
std::vector<at::Tensor> dnc_backward(at::Tensor dy, std::vector<at::Tensor> t, ControllerWeights cw, at::Tensor Wi, at::Tensor Wo,
                                     int64_t I, int64_t R, double clip) {
  auto Z = t[0], XI = t[4], HR = t[25], YP = t[27];
  const int64_t T = Z.size(0), B = Z.size(1), C = t[2].size(2), W = t[6].size(2), N = t[6].size(3);
  const Dims d = dims(B, T, I, C, N, W, R, Wo.size(0), clip);
  const int64_t RW = R * W, HR_ = C + RW;
  auto opt = Z.options();
  const Saved v = pointers(t);
  const Links link{v.link, B, N * N, t[17].size(0) - 1};

  const auto out = outputs_backward(dy, YP, HR, Wo, d.clip);
  const float* dhr = out[0].data_ptr<float>();
  auto dXI = at::empty({T, B, d.P}, opt), dh = at::empty({B, C}, opt);
  auto [dGP, dZ] = controller_grad_buffers(cw, T, B, C, d.Z, opt);
  // Carried backwards, each dL/d(this state's value): step t+1's part on entry to step t.
  auto dc = at::zeros({B, C}, opt), dh_next = at::zeros({B, C}, opt), dr = at::zeros({B, RW}, opt);
  auto dM = at::zeros({B, W, N}, opt), dL = at::zeros({B, N, N}, opt), dp = at::zeros({B, N}, opt), du = at::zeros({B, N}, opt);
  auto dwr = at::zeros({2, B, R, N}, opt);  // this step's read weights, the previous step's
  auto scratch = at::empty({B, 3 * R + 6, N}, opt);
  float *dxi = dXI.data_ptr<float>(), *drp = dr.data_ptr<float>(), *dMp = dM.data_ptr<float>(), *dLp = dL.data_ptr<float>(), *dpp = dp.data_ptr<float>(),
        *dup = du.data_ptr<float>(), *dwrp = dwr.data_ptr<float>(), *sc = scratch.data_ptr<float>();

  for (int64_t s = T - 1; s >= 0; --s) {
    float* dwr_now = dwrp + (s % 2) * B * R * N;
    float* dwr_before = dwrp + ((s + 1) % 2) * B * R * N;
    for_each_sequence(B, [&](int64_t b) {
      const int64_t sb = s * B + b, nb = sb + B;
      const float* a = v.act + sb * d.P;
      float* da = dxi + sb * d.P;
      std::fill(da, da + d.P, 0.f);
      const float *Mp = v.mem + sb * N * W, *M = v.mem + nb * N * W, *wrp = v.wr + sb * R * N, *wr = v.wr + nb * R * N;
      const float *ww = v.ww + nb * N, *wwp = v.ww + sb * N;
      const float *pprev = v.prec + sb * N, *up = v.u + sb * N, *psi = v.psi + sb * N;
      float *gM = dMp + b * N * W, *gL = dLp + b * N * N, *gp_ = dpp + b * N, *gu = dup + b * N;
      float *gwr = dwr_now + b * R * N, *gwr_prev = dwr_before + b * R * N, *gr = drp + b * RW;
      std::fill(gwr_prev, gwr_prev + R * N, 0.f);
      float* S = sc + b * (3 * R + 6) * N;
      float *gb = S, *gcr = S + R * N, *gf = S + 2 * R * N, *fm = S + 3 * R * N, *gww = fm + N, *gpl = gww + N,
            *galloc = gpl + N, *gcw = galloc + N, *fm2 = gcw + N;
      // Reads r = wr M_t: the output layer's and step t+1's gradient of r.
      for (int64_t q = 0; q < RW; ++q) gr[q] += dhr[sb * HR_ + C + q];
      read_backward(N, W, M, R, wr, gr, gwr, gM);
      // Read modes wr = pi0 b + pi1 c + pi2 f, then the read content lookups on M_t.
      std::fill(fm, fm + N, 0.f);
      for (int64_t r = 0; r < R; ++r) {
        const float* pi = a + d.o_modes + 3 * r;
        const float* g = gwr + r * N;
        float* dpi = da + d.o_modes + 3 * r;
        dpi[0] = dot(g, v.bw + (sb * R + r) * N, N);
        dpi[1] = dot(g, v.cr + (sb * R + r) * N, N);
        dpi[2] = dot(g, v.fw + (sb * R + r) * N, N);
        softmax_backward(pi, dpi, 3);
        for (int64_t i = 0; i < N; ++i) { gb[r * N + i] = pi[0] * g[i]; gcr[r * N + i] = pi[1] * g[i]; gf[r * N + i] = pi[2] * g[i]; }
        da[d.o_rstr + r] = content_backward(a + d.o_rkey + r * W, W, a[d.o_rstr + r], v.krn[sb * R + r], v.mn + nb * N, N,
                                            v.kr + (sb * R + r) * N, v.cr + (sb * R + r) * N, gcr + r * N, fm, da + d.o_rkey + r * W);
      }
      content_memory_backward(N, W, M, R, a + d.o_rkey, W, da + d.o_rkey, W, gcr, N, fm, gM);
      // Directional weights f = L wr_{t-1}, b = L^T wr_{t-1}, heads in chunks, the last sweep
      // (the first chunk's) also through the link update.
      std::fill(gww, gww + N, 0.f);
      std::fill(gpl, gpl + N, 0.f);
      const bool odd = s % 2;  // L_{t-1} not kept: recomputed from L_{t-2} (Links)
      const float* Ls = link(odd ? s - 1 : s, b);
      const Before prev{wwp, odd ? v.prec + (sb - B) * N : nullptr};
      for (int64_t h0 = (R - 1) / HEAD_CHUNK * HEAD_CHUNK; h0 >= 0; h0 -= HEAD_CHUNK)
        with_heads(std::min(HEAD_CHUNK, R - h0), [&](auto H) {
          constexpr int h = decltype(H)::value;
          const auto f = h0 == 0 ? (odd ? link_backward<h, true, true> : link_backward<h, true, false>)
                                 : (odd ? link_backward<h, false, true> : link_backward<h, false, false>);
          f(N, Ls, prev, pprev, ww, wrp + h0 * N, gf + h0 * N, gb + h0 * N, gL, gwr_prev + h0 * N, gww, gpl);
        });
      // Precedence p_t = (1 - sum ww) p_{t-1} + ww.
      float wsum = 0.f;
      for (int64_t i = 0; i < N; ++i) wsum += ww[i];
      const float dpp_dot = dot(gp_, pprev, N);
      for (int64_t i = 0; i < N; ++i) {
        gww[i] += gp_[i] - dpp_dot;
        gp_[i] = gp_[i] * (1.f - wsum) + gpl[i];  // becomes dL/dp_{t-1}
      }
      // The write M_t = M_{t-1} + ww (v - M_{t-1} e).
      float *de = da + d.o_erase, *dv = da + d.o_wvec;
      const float* e = a + d.o_erase;
      write_backward(N, W, Mp, ww, e, a + d.o_wvec, gM, gww, de, dv);
      // Write weighting ww = gw (ga a + (1 - ga) c^w).
      const float ga = a[d.o_ag], gw = a[d.o_wg];
      const float *alloc = v.alloc + sb * N, *cw = v.cw + sb * N;
      float dga = 0.f, dgw = 0.f;
      for (int64_t i = 0; i < N; ++i) {
        dgw += gww[i] * (ga * alloc[i] + (1.f - ga) * cw[i]);
        dga += gw * gww[i] * (alloc[i] - cw[i]);
        galloc[i] = gw * ga * gww[i];
        gcw[i] = gw * (1.f - ga) * gww[i];
      }
      da[d.o_ag] = dga;
      da[d.o_wg] = dgw;
      // Write content lookup on M_{t-1}.
      std::fill(fm2, fm2 + N, 0.f);
      da[d.o_wstr] = content_backward(a + d.o_wkey, W, a[d.o_wstr], v.kwn[sb], v.mn + sb * N, N, v.kw + sb * N, cw, gcw, fm2,
                                      da + d.o_wkey);
      content_memory_backward(N, W, Mp, 1, a + d.o_wkey, W, da + d.o_wkey, W, gcw, N, fm2, gM);
      // Allocation, with the sort order fixed: s sorted usage, P its exclusive products.
      const int64_t* order = v.order + sb * N;
      const float *su = v.su + sb * N, *pp = v.pp + sb * N;
      float later = 0.f;  // sum over k > j of dL/da_k (1 - s_k) P_k
      for (int64_t j = N - 1; j >= 0; --j) {
        const float ga_j = galloc[order[j]];
        gu[order[j]] += (1.f - EPS) * (-ga_j * pp[j] + later / su[j]);
        later += ga_j * (1.f - su[j]) * pp[j];
      }
      // Usage u_t = (u_{t-1} + ww_{t-1} - u_{t-1} ww_{t-1}) psi, then the retention psi.
      float* dpsi = fm2;  // reused
      for (int64_t i = 0; i < N; ++i) {
        dpsi[i] = gu[i] * (up[i] + wwp[i] - up[i] * wwp[i]);
        gu[i] = gu[i] * psi[i] * (1.f - wwp[i]);  // becomes dL/du_{t-1}
      }
      for (int64_t r = 0; r < R; ++r) {
        const float fr = a[d.o_free + r];
        float dfr = 0.f;
        for (int64_t i = 0; i < N; ++i) {
          float others = 1.f;
          for (int64_t q = 0; q < R; ++q)
            if (q != r) others *= 1.f - a[d.o_free + q] * wrp[q * N + i];
          dfr -= dpsi[i] * wrp[r * N + i] * others;
          gwr_prev[r * N + i] -= dpsi[i] * fr * others;
        }
        da[d.o_free + r] = dfr;
      }
      // Activations and the clip, back to the raw interface vector.
      const float* raw = v.xi + sb * d.P;
      for (int64_t r = 0; r < R; ++r) {
        da[d.o_rstr + r] *= softplus_grad(clipped(raw[d.o_rstr + r], d.clip));
        da[d.o_free + r] *= a[d.o_free + r] * (1.f - a[d.o_free + r]);
      }
      da[d.o_wstr] *= softplus_grad(clipped(raw[d.o_wstr], d.clip));
      for (int64_t j = 0; j < W; ++j) de[j] *= e[j] * (1.f - e[j]);
      da[d.o_ag] *= ga * (1.f - ga);
      da[d.o_wg] *= gw * (1.f - gw);
      for (int64_t q = 0; q < d.P; ++q)
        if (!passes(raw[q], d.clip)) da[q] = 0.f;
    });
    controller_backward_step(s, I, C, out[0], dXI, Wi, cw, Z, t[1], t[2], t[3], dh, dc, dGP, dZ, dr, dh_next);
  }
  auto grads = controller_weight_grads(cw, dGP, Z, dXI, HR, C);
  grads.push_back(out[1]);
  grads.push_back(out[2]);
  return grads;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &dnc_forward, "DNC sequence forward (memrepro)");
  m.def("backward", &dnc_backward, "DNC sequence backward (memrepro)");
}
