// Loading and saving Hugging Face model directories: round trip, and every mismatch between
// config.json and the tensors is an error naming the tensor and file, leaving the model intact.
#include "torch_test.h"

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "model/hf_checkpoint.h"
#include "test_util.h"

using dus::testing::TempDir;

namespace {

dus::ModelConfig tiny_config() {
  dus::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  return c;
}

// Saves a tiny model, then rewrites its safetensors with `edit` applied to the tensor list.
void save_with(const std::string& dir, const std::function<void(dus::NamedTensors&)>& edit) {
  torch::manual_seed(0);
  dus::Transformer model(tiny_config());
  dus::save_hf_model(model, dir);
  auto tensors = dus::hf_tensors(model);
  edit(tensors);
  dus::write_safetensors(dir + "/model.safetensors", tensors);
}

std::string load_error(const std::string& dir) {
  try {
    dus::load_hf_model(dir);
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("save then load gives the same parameters and config", "[unit]") {
  TempDir dir;
  torch::manual_seed(0);
  dus::Transformer model(tiny_config());
  dus::save_hf_model(model, dir.path());
  auto loaded = dus::load_hf_model(dir.path());
  auto a = model->named_parameters(), b = loaded->named_parameters();
  for (const auto& p : a) CHECK(torch::equal(p.value(), b[p.key()]));
  auto config = dus::json::parse_file(dir.file("config.json"));
  CHECK(config.find("architectures")->as_array()[0].as_string() == "MistralForCausalLM");
  CHECK(config.find("dtype")->as_string() == "float32");
}

TEST_CASE("saving in bf16 writes BF16 tensors and the dtype into config.json", "[unit]") {
  TempDir dir;
  dus::Transformer model(tiny_config());
  dus::SaveOptions opts;
  opts.dtype = torch::kBFloat16;
  opts.extra_config = dus::json::parse(R"({"dus":{"note":"x"}})", "t");
  dus::save_hf_model(model, dir.path(), opts);
  auto f = dus::SafetensorsFile::open(dir.file("model.safetensors"));
  CHECK(f.entry("model.norm.weight").dtype == dus::StDtype::BF16);
  auto config = dus::json::parse_file(dir.file("config.json"));
  CHECK(config.find("dtype")->as_string() == "bfloat16");
  CHECK(config.find("dus")->find("note")->as_string() == "x");
}

TEST_CASE("a missing tensor is named", "[unit]") {
  TempDir dir;
  save_with(dir.path(), [](dus::NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](auto& x) { return x.first == "model.layers.1.mlp.up_proj.weight"; }),
            t.end());
  });
  CHECK_THAT(load_error(dir.path()),
             Catch::Contains("missing tensor 'model.layers.1.mlp.up_proj.weight'"));
}

TEST_CASE("an unexpected tensor is named with its file", "[unit]") {
  TempDir dir;
  save_with(dir.path(), [](dus::NamedTensors& t) {
    t.emplace_back("model.layers.2.mlp.up_proj.weight", torch::zeros({24, 16}));
  });
  CHECK_THAT(load_error(dir.path()),
             Catch::Contains("model.safetensors") &&
                 Catch::Contains("unexpected tensor 'model.layers.2.mlp.up_proj.weight'"));
}

TEST_CASE("a tensor whose shape differs from the config is named", "[unit]") {
  TempDir dir;
  save_with(dir.path(), [](dus::NamedTensors& t) {
    for (auto& x : t)
      if (x.first == "model.layers.0.self_attn.k_proj.weight") x.second = torch::zeros({16, 16});
  });
  CHECK_THAT(load_error(dir.path()),
             Catch::Contains("tensor 'model.layers.0.self_attn.k_proj.weight'") &&
                 Catch::Contains("shape [16, 16] differs from [8, 16]"));
}

TEST_CASE("an integer weight is rejected", "[unit]") {
  TempDir dir;
  save_with(dir.path(), [](dus::NamedTensors& t) {
    for (auto& x : t)
      if (x.first == "model.norm.weight") x.second = torch::ones({16}, torch::kInt);
  });
  CHECK_THAT(load_error(dir.path()),
             Catch::Contains("dtype I32 is not a floating-point weight type"));
}

TEST_CASE("a failed load leaves the target model unchanged", "[unit]") {
  TempDir dir;
  save_with(dir.path(), [](dus::NamedTensors& t) { t.pop_back(); });
  torch::manual_seed(9);
  dus::Transformer model(tiny_config());
  auto before = model->named_parameters()["model.embed_tokens.weight"].clone();
  auto ckpt = dus::SafetensorsCheckpoint::open_dir(dir.path());
  CHECK_THROWS_AS(dus::load_weights(model, ckpt, dir.path()), dus::Error);
  CHECK(torch::equal(model->named_parameters()["model.embed_tokens.weight"], before));
}

TEST_CASE("loading adopts the mapped bytes when the dtype matches", "[unit]") {
  TempDir dir;
  dus::Transformer model(tiny_config());
  dus::save_hf_model(model, dir.path());
  auto ckpt = dus::SafetensorsCheckpoint::open_dir(dir.path());
  auto loaded =
      dus::Transformer(tiny_config(), dus::ModelInit{torch::kFloat32, torch::kCPU, false});
  dus::load_weights(loaded, ckpt, dir.path());
  CHECK(ckpt.files()[0].is_mapped(loaded->named_parameters()["model.norm.weight"]));
  // Converting to bf16 copies instead.
  auto bf16 = dus::Transformer(tiny_config(), dus::ModelInit{torch::kBFloat16, torch::kCPU, false});
  dus::load_weights(bf16, ckpt, dir.path());
  CHECK(bf16->named_parameters()["model.norm.weight"].scalar_type() == torch::kBFloat16);
  CHECK(!ckpt.files()[0].is_mapped(bf16->named_parameters()["model.norm.weight"]));
}

TEST_CASE("the configuration's tensor list is the model's parameters, tied or not", "[unit]") {
  for (bool tied : {false, true}) {
    dus::ModelConfig c = tiny_config();
    c.tie_word_embeddings = tied;
    dus::Transformer model(c);
    std::vector<std::pair<std::string, std::vector<int64_t>>> from_model;
    for (const auto& [name, t] : dus::hf_tensors(model))
      from_model.push_back({name, t.sizes().vec()});
    CHECK(c.tensor_shapes() == from_model);
    CHECK(static_cast<int64_t>(from_model.size()) == 2 + 9 * c.num_hidden_layers + (tied ? 0 : 1));
  }
}
