// AdamW against torch::optim::AdamW, and the learning-rate schedules.
#include "torch_test.h"

#include "core/error.h"
#include "train/adamw.h"

#include <ATen/Parallel.h>

#include <cmath>
#include "train/lr_schedule.h"

TEST_CASE("AdamW matches torch::optim::AdamW step for step", "[unit]") {
  torch::manual_seed(0);
  auto w = torch::randn({5, 7}, torch::requires_grad());
  auto b = torch::randn({7}, torch::requires_grad());
  auto w_ref = w.detach().clone().requires_grad_(true);
  auto b_ref = b.detach().clone().requires_grad_(true);
  dus::OptimizerOptions o;
  o.weight_decay = 0.1;
  dus::AdamW ours({{"layer.weight", w}, {"layer.norm", b}}, o);
  // torch: decay on the matrix only, as ours decides by rank.
  torch::optim::AdamW ref(
      {torch::optim::OptimizerParamGroup(
           {w_ref},
           std::make_unique<torch::optim::AdamWOptions>(
               torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1))),
       torch::optim::OptimizerParamGroup(
           {b_ref},
           std::make_unique<torch::optim::AdamWOptions>(
               torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)))},
      torch::optim::AdamWOptions(1e-2));
  CHECK(!ours.slots()[1].decay);
  for (int step = 0; step < 5; ++step) {
    auto x = torch::randn({3, 5});
    ((x.matmul(w) + b).pow(2).sum()).backward();
    ((x.matmul(w_ref) + b_ref).pow(2).sum()).backward();
    ours.step(1e-2);
    ref.step();
    w.mutable_grad() = torch::Tensor();
    b.mutable_grad() = torch::Tensor();
    ref.zero_grad();
    CHECK(torch::allclose(w, w_ref, 1e-6, 1e-7));
    CHECK(torch::allclose(b, b_ref, 1e-6, 1e-7));
  }
}

TEST_CASE("bf16 parameters get fp32 masters that carry the precise value", "[unit]") {
  auto p = torch::ones({4}, torch::kBFloat16).requires_grad_(true);
  dus::OptimizerOptions o;
  o.weight_decay = 0;
  dus::AdamW opt({{"w", p}}, o);
  CHECK(opt.slots()[0].master.scalar_type() == torch::kFloat32);
  for (int i = 0; i < 3; ++i) {
    p.mutable_grad() = torch::full({4}, 1.0, torch::kBFloat16);
    opt.step(1e-4);  // smaller than bf16's resolution at 1.0
  }
  CHECK(opt.slots()[0].master[0].item<float>() < 1.0f);
  CHECK(torch::equal(p, opt.slots()[0].master.to(torch::kBFloat16)));
}

TEST_CASE("bf16 parameters on the CPU: the one-pass step equals fp32 AdamW on the widened grads",
          "[unit]") {
  // The bf16 loop (kernels/adamw_cpu.cpp) against the same optimizer on fp32 parameters fed
  // the bf16 gradients widened: masters within fp32 rounding (FMA), parameters exactly the
  // masters rounded to bf16, and the same bits for 1 and 2 threads.
  torch::manual_seed(3);
  auto init_w = torch::randn({300, 70}), init_b = torch::randn({70});
  auto run = [&](int threads) {
    const int saved = at::get_num_threads();
    at::set_num_threads(threads);
    auto w = init_w.to(torch::kBFloat16).requires_grad_(true);
    auto b = init_b.to(torch::kBFloat16).requires_grad_(true);
    auto w32 = w.detach().to(torch::kFloat32).requires_grad_(true);
    auto b32 = b.detach().to(torch::kFloat32).requires_grad_(true);
    dus::OptimizerOptions o;
    dus::AdamW bf16({{"layer.weight", w}, {"layer.norm", b}}, o);
    dus::AdamW fp32({{"layer.weight", w32}, {"layer.norm", b32}}, o);
    torch::manual_seed(4);
    for (int step = 0; step < 4; ++step) {
      auto gw = torch::randn({300, 70}).to(torch::kBFloat16),
           gb = torch::randn({70}).to(torch::kBFloat16);
      w.mutable_grad() = gw;
      b.mutable_grad() = gb;
      w32.mutable_grad() = gw.to(torch::kFloat32);
      b32.mutable_grad() = gb.to(torch::kFloat32);
      bf16.step(3e-3);
      fp32.step(3e-3);
    }
    at::set_num_threads(saved);
    for (size_t i = 0; i < 2; ++i) {
      const auto& s = bf16.slots()[i];
      CHECK(torch::allclose(s.master, fp32.slots()[i].master, 1e-6, 1e-6));
      CHECK(torch::allclose(s.exp_avg_sq, fp32.slots()[i].exp_avg_sq, 1e-6, 1e-9));
      CHECK(torch::equal(s.param, s.master.to(torch::kBFloat16)));
    }
    return bf16.slots()[0].master.clone();
  };
  CHECK(torch::equal(run(1), run(2)));
}

TEST_CASE("global gradient norm of bf16 gradients on the CPU: fp64 value, any thread count",
          "[unit]") {
  torch::manual_seed(5);
  auto a = torch::randn({1000, 37}).to(torch::kBFloat16).requires_grad_(true);
  auto b = torch::randn({5}).to(torch::kBFloat16).requires_grad_(true);
  a.mutable_grad() = torch::randn({1000, 37}).to(torch::kBFloat16) * 3;
  b.mutable_grad() = torch::randn({5}).to(torch::kBFloat16);
  const double want = std::sqrt(a.grad().to(torch::kDouble).pow(2).sum().item<double>() +
                                b.grad().to(torch::kDouble).pow(2).sum().item<double>());
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const double one = dus::global_grad_norm({a, b});
  at::set_num_threads(2);
  const double two = dus::global_grad_norm({a, b});
  at::set_num_threads(saved);
  CHECK(std::abs(one - want) <= 1e-6 * want);
  CHECK(one == two);
}

TEST_CASE("learning-rate schedules", "[unit]") {
  dus::ScheduleOptions s;
  s.lr = 1.0;
  s.lr_min = 0.1;
  s.warmup_steps = 10;
  s.total_steps = 110;
  CHECK(dus::lr_at(s, 0) == Approx(0.1));
  CHECK(dus::lr_at(s, 9) == Approx(1.0));
  CHECK(dus::lr_at(s, 10) == Approx(1.0));
  CHECK(dus::lr_at(s, 60) == Approx(0.55));  // cosine midpoint
  CHECK(dus::lr_at(s, 110) == Approx(0.1));
  CHECK(dus::lr_at(s, 500) == Approx(0.1));  // floor
  s.kind = "linear";
  CHECK(dus::lr_at(s, 60) == Approx(0.55));
  s.kind = "constant";
  CHECK(dus::lr_at(s, 100) == Approx(1.0));
  s.kind = "wsd";
  s.decay_fraction = 0.2;  // decay over steps 88..110
  CHECK(dus::lr_at(s, 80) == Approx(1.0));
  CHECK(dus::lr_at(s, 99) == Approx(0.55));
  CHECK(dus::lr_at(s, 110) == Approx(0.1));
  s.kind = "triangle";
  CHECK_THROWS_AS(dus::validate_schedule(s, "t"), dus::Error);
}

TEST_CASE("AdamW in chunks gives the bits of one pass (the chunk only bounds the transient)",
          "[unit]") {
  // fp32: LibTorch's fused kernel over the chunk's tensor list; bf16 on a CPU: the one-pass loop.
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    INFO("dtype " << c10::toString(dtype));
    torch::manual_seed(5);
    std::vector<torch::Tensor> a, b;
    std::vector<std::pair<std::string, at::Tensor>> named_a, named_b;
    const std::vector<std::vector<int64_t>> shapes = {{7, 5}, {5}, {3, 11}, {13}, {4, 4}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      auto t = torch::randn(shapes[i]).to(dtype);
      a.push_back(t.clone().requires_grad_(true));
      b.push_back(t.clone().requires_grad_(true));
      named_a.emplace_back("model.layers." + std::to_string(i) + ".w", a.back());
      named_b.emplace_back("model.layers." + std::to_string(i) + ".w", b.back());
    }
    dus::OptimizerOptions whole, chunked;
    chunked.chunk_elements = 16;  // every tensor but the smallest is a chunk of its own
    dus::AdamW one(named_a, whole), many(named_b, chunked);
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < a.size(); ++i) {
        auto g = torch::randn(shapes[i]).to(dtype);
        a[i].mutable_grad() = g.clone();
        b[i].mutable_grad() = g.clone();
      }
      one.step(1e-2);
      many.step(1e-2);
    }
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(torch::equal(one.slots()[i].master, many.slots()[i].master));
      CHECK(torch::equal(a[i], b[i]));
    }
  }
}
