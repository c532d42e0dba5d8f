// oneDNN 3D convolutions for lumbar_jax, called from JAX through the XLA FFI.
//
// Three handlers for the U-Net's SAME, stride-1 convolution in JAX's layouts (activations
// NDHWC, kernel DHWIO, float32 or bfloat16):
//   lumbar_onednn_conv_fwd          (x, w)  -> y    y = conv(x, w)
//   lumbar_onednn_conv_bwd_data     (dy, w) -> dx   the gradient with respect to x
//   lumbar_onednn_conv_bwd_weights  (x, dy) -> dw   the gradient with respect to w
// Every size comes from the buffers' shapes; padding is SAME for stride 1: (k - 1) // 2 before,
// the rest after (XLA's convention, also for even k).
//
// Each problem (direction, dtype, shapes) gets its oneDNN primitive once, cached. The
// activations stay in JAX's channels-last layout (oneDNN's ndhwc: no copy); the kernel, small,
// is reordered per call into the blocked layout oneDNN picks (format "any"). With
// LUMBAR_ONEDNN_ACT_FORMAT=any the activations are reordered too (slower here; for
// measurements). oneDNN runs on its OpenMP threads; calls are serialized by a mutex (XLA may run
// independent ops at once, e.g. the data and weight gradients of one conv, and two OpenMP teams
// of all cores each would oversubscribe the CPU); LUMBAR_ONEDNN_SERIALIZE=0 lets them overlap.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using Tag = dnnl::memory::format_tag;
using DType = dnnl::memory::data_type;

enum Kind : int { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

struct Problem {
  int kind;
  DType type;
  int64_t n, d, h, w, c, o, kd, kh, kw;
  int threads;  // OpenMP threads the primitive is made for and runs on
  auto tie() const { return std::tie(kind, type, n, d, h, w, c, o, kd, kh, kw, threads); }
  double Flops() const { return 2.0 * n * d * h * w * c * o * kd * kh * kw; }
  bool operator<(const Problem& p) const { return tie() < p.tie(); }
};

// One argument of a primitive: its layout in JAX's buffer and the primitive's own layout.
struct Arg {
  int id = 0;
  memory::desc user, prim;
  bool reorder = false;
  dnnl::reorder to_prim;  // inputs: user -> prim; the output: prim -> user
};

struct Plan {
  dnnl::primitive prim;
  Arg in[2];
  Arg out;
  memory::desc scratchpad;
  size_t workspace_bytes = 0;  // scratchpad and reordered arguments
  std::string impl;
};

bool EnvFlag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return !(std::strcmp(v, "0") == 0 || std::strcmp(v, "false") == 0);
}

bool ActivationsAny() {
  const char* v = std::getenv("LUMBAR_ONEDNN_ACT_FORMAT");
  return v != nullptr && std::strcmp(v, "any") == 0;
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A growing 64-byte aligned buffer per thread for the scratchpad and reordered arguments.
struct Arena {
  void* data = nullptr;
  size_t size = 0;
  ~Arena() { std::free(data); }
  void* Get(size_t bytes) {
    if (bytes > size) {
      std::free(data);
      size = (bytes + 4095) / 4096 * 4096;
      data = std::aligned_alloc(64, size);
      if (data == nullptr) size = 0;
    }
    return data;
  }
};

size_t Align(size_t bytes) { return (bytes + 63) / 64 * 64; }

memory::desc Activations(int64_t n, int64_t c, const Problem& p, DType type, bool any) {
  return memory::desc({n, c, p.d, p.h, p.w}, type, any ? Tag::any : Tag::ndhwc);
}

memory::desc Weights(const Problem& p, DType type, bool any) {
  return memory::desc({p.o, p.c, p.kd, p.kh, p.kw}, type, any ? Tag::any : Tag::dhwio);
}

void SetArg(Arg& arg, int id, const memory::desc& user, const memory::desc& prim, bool input) {
  arg.id = id;
  arg.user = user;
  arg.prim = prim;
  arg.reorder = user != prim;
  if (arg.reorder) {
    auto& eng = Engine();
    arg.to_prim = input ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, user, eng, prim))
                        : dnnl::reorder(dnnl::reorder::primitive_desc(eng, prim, eng, user));
  }
}

std::unique_ptr<Plan> MakePlan(const Problem& p) {
  auto& eng = Engine();
  const bool any = ActivationsAny();
  const memory::dims strides = {1, 1, 1};
  const memory::dims pad_l = {(p.kd - 1) / 2, (p.kh - 1) / 2, (p.kw - 1) / 2};
  const memory::dims pad_r = {p.kd - 1 - pad_l[0], p.kh - 1 - pad_l[1], p.kw - 1 - pad_l[2]};
  const auto src = Activations(p.n, p.c, p, p.type, any);
  const auto dst = Activations(p.n, p.o, p, p.type, any);
  const auto wei = Weights(p, p.type, true);
  const auto user_src = Activations(p.n, p.c, p, p.type, false);
  const auto user_dst = Activations(p.n, p.o, p, p.type, false);
  const auto user_wei = Weights(p, p.type, false);

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, wei, dst,
      strides, pad_l, pad_r, attr);

  auto plan = std::make_unique<Plan>();
  if (p.kind == kForward) {
    plan->prim = dnnl::convolution_forward(fwd);
    SetArg(plan->in[0], DNNL_ARG_SRC, user_src, fwd.src_desc(), true);
    SetArg(plan->in[1], DNNL_ARG_WEIGHTS, user_wei, fwd.weights_desc(), true);
    SetArg(plan->out, DNNL_ARG_DST, user_dst, fwd.dst_desc(), false);
    plan->scratchpad = fwd.scratchpad_desc();
    plan->impl = fwd.impl_info_str();
  } else if (p.kind == kBackwardData) {
    auto bwd = dnnl::convolution_backward_data::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src, wei, dst, strides, pad_l, pad_r, fwd, attr);
    plan->prim = dnnl::convolution_backward_data(bwd);
    SetArg(plan->in[0], DNNL_ARG_DIFF_DST, user_dst, bwd.diff_dst_desc(), true);
    SetArg(plan->in[1], DNNL_ARG_WEIGHTS, user_wei, bwd.weights_desc(), true);
    SetArg(plan->out, DNNL_ARG_DIFF_SRC, user_src, bwd.diff_src_desc(), false);
    plan->scratchpad = bwd.scratchpad_desc();
    plan->impl = bwd.impl_info_str();
  } else {
    auto bwd = dnnl::convolution_backward_weights::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src, wei, dst, strides, pad_l, pad_r, fwd, attr);
    plan->prim = dnnl::convolution_backward_weights(bwd);
    SetArg(plan->in[0], DNNL_ARG_SRC, user_src, bwd.src_desc(), true);
    SetArg(plan->in[1], DNNL_ARG_DIFF_DST, user_dst, bwd.diff_dst_desc(), true);
    SetArg(plan->out, DNNL_ARG_DIFF_WEIGHTS, user_wei, bwd.diff_weights_desc(), false);
    plan->scratchpad = bwd.scratchpad_desc();
    plan->impl = bwd.impl_info_str();
  }
  size_t bytes = Align(plan->scratchpad.get_size());
  for (const Arg* arg : {&plan->in[0], &plan->in[1], &plan->out}) {
    if (arg->reorder) bytes += Align(arg->prim.get_size());
  }
  plan->workspace_bytes = bytes;
  return plan;
}

// Problems below this many FLOPs per thread run on fewer threads (at least one).
std::atomic<double> min_flops_per_thread{[] {
  const char* v = std::getenv("LUMBAR_ONEDNN_MIN_MFLOP_PER_THREAD");
  return v != nullptr && *v != '\0' ? std::atof(v) * 1e6 : 0.0;
}()};

int Threads(const Problem& p) {
  static const int max_threads = omp_get_max_threads();
  const double grain = min_flops_per_thread.load();
  if (grain <= 0) return max_threads;
  return static_cast<int>(std::clamp<double>(p.Flops() / grain, 1.0, max_threads));
}

std::mutex cache_mutex;
std::map<Problem, std::unique_ptr<Plan>> cache;
std::mutex run_mutex;
std::atomic<int64_t> calls{0}, in_flight{0}, max_in_flight{0};

// oneDNN sizes its work split by the calling thread's OpenMP thread count, when the primitive
// is made and when it runs: both happen under this guard.
struct ThreadCount {
  int saved;
  explicit ThreadCount(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

const Plan& GetPlan(const Problem& p) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto it = cache.find(p);
  if (it == cache.end()) {
    ThreadCount threads(p.threads);
    it = cache.emplace(p, MakePlan(p)).first;
  }
  return *it->second;
}

void Run(const Plan& plan, void* in0, void* in1, void* out) {
  thread_local Arena arena;
  thread_local dnnl::stream stream(Engine());
  auto& eng = Engine();
  char* work = static_cast<char*>(arena.Get(plan.workspace_bytes));
  if (work == nullptr && plan.workspace_bytes > 0) throw std::bad_alloc();
  std::unordered_map<int, memory> args;
  args.emplace(DNNL_ARG_SCRATCHPAD, memory(plan.scratchpad, eng, work));
  work += Align(plan.scratchpad.get_size());
  void* inputs[2] = {in0, in1};
  for (int i = 0; i < 2; ++i) {
    const Arg& arg = plan.in[i];
    memory user(arg.user, eng, inputs[i]);
    if (!arg.reorder) {
      args.emplace(arg.id, user);
      continue;
    }
    memory prim(arg.prim, eng, work);
    work += Align(arg.prim.get_size());
    arg.to_prim.execute(stream, user, prim);
    args.emplace(arg.id, prim);
  }
  memory user_out(plan.out.user, eng, out);
  memory prim_out = user_out;
  if (plan.out.reorder) prim_out = memory(plan.out.prim, eng, work);
  args.emplace(plan.out.id, prim_out);
  plan.prim.execute(stream, args);
  if (plan.out.reorder) plan.out.to_prim.execute(stream, prim_out, user_out);
  stream.wait();
}

ffi::Error Check(bool ok, const std::string& message) {
  return ok ? ffi::Error::Success() : ffi::Error(ffi::ErrorCode::kInvalidArgument, message);
}

template <int K>
ffi::Error Conv(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out) {
  const auto type = a.element_type();
  if (type != b.element_type() || type != out->element_type()) {
    return Check(false, "lumbar_onednn_conv: all buffers need one dtype");
  }
  if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) {
    return Check(false, "lumbar_onednn_conv: float32 or bfloat16 only");
  }
  if (a.dimensions().size() != 5 || b.dimensions().size() != 5 ||
      out->dimensions().size() != 5) {
    return Check(false, "lumbar_onednn_conv: 5D buffers (NDHWC, DHWIO) only");
  }
  Problem p{};
  p.kind = K;
  p.type = type == ffi::DataType::F32 ? DType::f32 : DType::bf16;
  // Activations (N, D, H, W, C); kernel (KD, KH, KW, I, O).
  const auto act = a.dimensions();
  const auto ker = K == kBackwardWeights ? out->dimensions() : b.dimensions();
  p.n = act[0], p.d = act[1], p.h = act[2], p.w = act[3];
  p.kd = ker[0], p.kh = ker[1], p.kw = ker[2], p.c = ker[3], p.o = ker[4];
  const auto other = K == kBackwardWeights ? b.dimensions() : out->dimensions();
  const int64_t a_channels = K == kBackwardData ? p.o : p.c;
  const int64_t other_channels = K == kForward ? p.o : K == kBackwardData ? p.c : p.o;
  bool ok = act[4] == a_channels && other[4] == other_channels;
  for (int i = 0; i < 4; ++i) ok = ok && other[i] == act[i];
  if (!ok) return Check(false, "lumbar_onednn_conv: shapes do not match one convolution");
  p.threads = Threads(p);

  calls.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = in_flight.fetch_add(1) + 1;
  int64_t seen = max_in_flight.load();
  while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
  }
  ffi::Error result = ffi::Error::Success();
  try {
    const Plan& plan = GetPlan(p);
    ThreadCount threads(p.threads);
    static const bool serialize = EnvFlag("LUMBAR_ONEDNN_SERIALIZE", true);
    if (serialize) {
      std::lock_guard<std::mutex> lock(run_mutex);
      Run(plan, a.untyped_data(), b.untyped_data(), out->untyped_data());
    } else {
      Run(plan, a.untyped_data(), b.untyped_data(), out->untyped_data());
    }
  } catch (const dnnl::error& e) {
    result = ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  } catch (const std::exception& e) {
    result = ffi::Error(ffi::ErrorCode::kInternal, std::string("lumbar_onednn_conv: ") + e.what());
  }
  in_flight.fetch_sub(1);
  return result;
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(lumbar_onednn_conv_fwd, Conv<kForward>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(lumbar_onednn_conv_bwd_data, Conv<kBackwardData>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(lumbar_onednn_conv_bwd_weights, Conv<kBackwardWeights>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

extern "C" {

// oneDNN's version, "major.minor.patch".
const char* lumbar_onednn_version() {
  static std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }();
  return version.c_str();
}

// Counters since load: calls, cached primitives, the most calls that were in flight at once.
void lumbar_onednn_stats(int64_t* out3) {
  out3[0] = calls.load();
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    out3[1] = static_cast<int64_t>(cache.size());
  }
  out3[2] = max_in_flight.load();
}

// The oneDNN implementation chosen for one problem (kind 0 fwd, 1 bwd data, 2 bwd weights;
// bf16 != 0 for bfloat16), e.g. "brg:avx512_core"; an empty string if it cannot be made.
const char* lumbar_onednn_impl(int kind, int bf16, int64_t n, int64_t d, int64_t h, int64_t w,
                               int64_t c, int64_t o, int64_t kd, int64_t kh, int64_t kw) {
  thread_local std::string name;
  try {
    Problem p{kind, bf16 ? DType::bf16 : DType::f32, n, d, h, w, c, o, kd, kh, kw, 1};
    p.threads = Threads(p);
    name = GetPlan(p).impl + " threads:" + std::to_string(p.threads);
  } catch (const std::exception&) {
    name.clear();
  }
  return name.c_str();
}

// Problems below this many MFLOP per thread run on fewer threads; 0: always all threads.
void lumbar_onednn_set_min_mflop_per_thread(double mflop) { min_flops_per_thread = mflop * 1e6; }

}  // extern "C"
