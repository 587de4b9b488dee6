#include "scaling/provenance.h"

#include <fmt/format.h>

#include "core/error.h"
#include "model/model_config.h"
#include "scaling/block_expansion.h"

namespace dus {

namespace {

bool continues(const LayerOrigin& prev, const LayerOrigin& next) {
  return prev.copy == next.copy && prev.base_layer + 1 == next.base_layer;
}

json::Value origin_json(const LayerOrigin& o) {
  json::Object obj{{"copy", json::Value(o.copy)}, {"base_layer", json::Value(o.base_layer)}};
  if (o.zero_output) obj.emplace_back("zero_output", json::Value(true));
  return json::Value(std::move(obj));
}

LayerOrigin origin_from_json(const json::Value& v, const std::string& where) {
  LayerOrigin o;
  const json::Value* copy = v.find("copy");
  const json::Value* base = v.find("base_layer");
  if (!v.is_object() || !copy || !base)
    throw Error(where, "expected an object {\"copy\": C, \"base_layer\": B}");
  o.copy = copy->as_int(where + ".copy");
  o.base_layer = base->as_int(where + ".base_layer");
  if (const json::Value* z = v.find("zero_output"))
    o.zero_output = z->as_bool(where + ".zero_output");
  return o;
}

const json::Value& require(const json::Value& v, const char* key, const std::string& source) {
  const json::Value* found = v.find(key);
  if (!found)
    throw Error(source, std::string("missing key \"") + key + "\" in the \"dus\" provenance block");
  return *found;
}

std::string origin_text(const LayerOrigin& o) {
  return fmt::format("copy {} layer {}", o.copy, o.base_layer);
}

}  // namespace

std::string Seam::name() const {
  return fmt::format("{}|{}: {} -> {}", layer - 1, layer, origin_text(before), origin_text(after));
}

std::vector<Seam> Provenance::seams() const {
  std::vector<Seam> out;
  for (size_t i = 1; i < plan.layers.size(); ++i)
    if (!continues(plan.layers[i - 1], plan.layers[i]))
      out.push_back({static_cast<int64_t>(i), plan.layers[i - 1], plan.layers[i]});
  return out;
}

std::string Provenance::describe_layer(int64_t i) const {
  if (i < 0 || i >= plan.scaled_layers())
    throw Error("provenance", fmt::format("layer {} is outside [0, {})", i, plan.scaled_layers()));
  const LayerOrigin& o = plan.layers[static_cast<size_t>(i)];
  return fmt::format("copy {}, base layer {}{}", o.copy, o.base_layer,
                     o.zero_output ? ", zeroed output" : "");
}

json::Value Provenance::to_json() const {
  json::Object obj;
  obj.emplace_back("method", json::Value(plan_method_name(plan.method)));
  obj.emplace_back("base_layers", json::Value(plan.base_layers));
  obj.emplace_back("scaled_layers", json::Value(plan.scaled_layers()));
  if (plan.method == PlanMethod::kDus) obj.emplace_back("m", json::Value(plan.m));
  if (plan.method == PlanMethod::kBlockExpansion)
    obj.emplace_back("every", json::Value(plan.every));
  if (!plan.slices.empty()) {
    json::Array slices;
    for (const auto& r : plan.slices)
      slices.emplace_back(json::Array{json::Value(r.begin), json::Value(r.end)});
    obj.emplace_back("slices", json::Value(std::move(slices)));
  }
  json::Array layers;
  for (const auto& o : plan.layers) layers.push_back(origin_json(o));
  obj.emplace_back("layers", json::Value(std::move(layers)));
  json::Array seam_list;
  for (const auto& s : seams())
    seam_list.emplace_back(json::Object{{"layer", json::Value(s.layer)},
                                        {"before", origin_json(s.before)},
                                        {"after", origin_json(s.after)},
                                        {"name", json::Value(s.name())}});
  obj.emplace_back("seams", json::Value(std::move(seam_list)));
  return json::Value(std::move(obj));
}

Provenance Provenance::from_json(const json::Value& v, const std::string& source) {
  const std::string where = source + ": \"dus\"";
  if (!v.is_object()) throw Error(where, std::string("expected an object, got ") + v.type_name());
  const std::string method = require(v, "method", where).as_string(where + ".method");
  const int64_t n = require(v, "base_layers", where).as_int(where + ".base_layers");
  // Rebuild the plan from its parameters (validating them), then check the stored layers.
  LayerPlan plan;
  if (method == "dus") {
    plan = dus_plan(n, require(v, "m", where).as_int(where + ".m"), {/*allow_shallower=*/true});
  } else if (method == "block_expansion") {
    plan = block_expansion_plan(n, require(v, "every", where).as_int(where + ".every"));
  } else if (method == "slices") {
    std::vector<LayerRange> slices;
    for (const auto& r : require(v, "slices", where).as_array(where + ".slices")) {
      const auto& pair = r.as_array(where + ".slices[]");
      if (pair.size() != 2) throw Error(where + ".slices", "expected [begin, end] pairs");
      slices.push_back({pair[0].as_int(where + ".slices[]"), pair[1].as_int(where + ".slices[]")});
    }
    plan = slices_plan(n, slices);
  } else {
    throw Error(where + ".method", "unknown method '" + method + "'",
                "expected dus, slices or block_expansion");
  }
  const auto& layers = require(v, "layers", where).as_array(where + ".layers");
  std::vector<LayerOrigin> stored;
  for (size_t i = 0; i < layers.size(); ++i)
    stored.push_back(origin_from_json(layers[i], fmt::format("{}.layers[{}]", where, i)));
  if (stored != plan.layers)
    throw Error(where + ".layers",
                "the per-layer origins disagree with the plan " + plan.describe(),
                "was the \"dus\" block edited by hand?");
  return Provenance{plan};
}

std::optional<Provenance> Provenance::from_config(const ModelConfig& config,
                                                  const std::string& source) {
  const json::Value* block = config.raw.find(kProvenanceKey);
  if (!block) return std::nullopt;
  return from_json(*block, source);
}

std::map<std::string, std::string> Provenance::safetensors_metadata() const {
  return {{kProvenanceKey, json::dump(to_json())}};
}

}  // namespace dus
