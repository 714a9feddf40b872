#include "config.h"

#include "../errors.h"

namespace spin {

namespace {

class Reader {
 public:
  explicit Reader(const Napi::Object& object) : object_(object) {}

  int64_t PositiveInt(const char* key) const {
    const double value = Number(key);
    if (value < 1 || value != static_cast<double>(static_cast<int64_t>(value))) Fail(key, "a positive integer");
    return static_cast<int64_t>(value);
  }
  double PositiveNumber(const char* key) const {
    const double value = Number(key);
    if (!(value > 0)) Fail(key, "a positive number");
    return value;
  }
  bool Bool(const char* key) const {
    const Napi::Value value = object_.Get(key);
    if (!value.IsBoolean()) Fail(key, "a boolean");
    return value.As<Napi::Boolean>().Value();
  }
  std::string String(const char* key) const {
    const Napi::Value value = object_.Get(key);
    if (!value.IsString()) Fail(key, "a string");
    return value.As<Napi::String>().Utf8Value();
  }
  bool Has(const char* key) const {
    const Napi::Value value = object_.Get(key);
    return !value.IsUndefined() && !value.IsNull();
  }

 private:
  double Number(const char* key) const {
    const Napi::Value value = object_.Get(key);
    if (!value.IsNumber()) Fail(key, "a number");
    return value.As<Napi::Number>().DoubleValue();
  }
  [[noreturn]] void Fail(const char* key, const char* expected) const {
    throw SpinError(ErrorCode::kInvalidArgument, std::string("model config field '") + key + "' must be " + expected);
  }
  const Napi::Object& object_;
};

}  // namespace

ModelConfig ReadModelConfig(const Napi::Object& object) {
  const Reader read(object);
  ModelConfig config;
  const std::string architecture = read.String("architecture");
  if (architecture == "llama") {
    config.architecture = Architecture::kLlama;
  } else if (architecture == "gpt2") {
    config.architecture = Architecture::kGpt2;
  } else {
    throw SpinError(ErrorCode::kInvalidArgument, "unknown architecture '" + architecture + "'");
  }
  config.vocab_size = read.PositiveInt("vocabSize");
  config.hidden_size = read.PositiveInt("hiddenSize");
  config.intermediate_size = read.PositiveInt("intermediateSize");
  config.num_layers = read.PositiveInt("numLayers");
  config.num_heads = read.PositiveInt("numHeads");
  config.num_kv_heads = read.PositiveInt("numKvHeads");
  config.head_dim = read.PositiveInt("headDim");
  config.max_positions = read.PositiveInt("maxPositions");
  config.norm_eps = read.PositiveNumber("normEps");
  config.tie_word_embeddings = read.Bool("tieWordEmbeddings");
  if (config.num_heads % config.num_kv_heads != 0) {
    throw SpinError(ErrorCode::kInvalidArgument, "numHeads (" + std::to_string(config.num_heads) +
                                                     ") must be a multiple of numKvHeads (" +
                                                     std::to_string(config.num_kv_heads) + ")");
  }
  if (config.architecture == Architecture::kGpt2) {
    if (config.head_dim * config.num_heads != config.hidden_size) {
      throw SpinError(ErrorCode::kInvalidArgument, "gpt2: hiddenSize must equal numHeads * headDim");
    }
    return config;
  }
  if (config.head_dim % 2 != 0) throw SpinError(ErrorCode::kInvalidArgument, "headDim must be even for RoPE");
  config.rope_theta = read.PositiveNumber("ropeTheta");
  config.qkv_bias = read.Bool("qkvBias");
  config.o_bias = read.Bool("oBias");
  config.mlp_bias = read.Bool("mlpBias");
  if (read.Has("slidingWindow")) config.sliding_window = read.PositiveInt("slidingWindow");
  if (read.Has("slidingWindowFromLayer")) {
    const double from = object.Get("slidingWindowFromLayer").ToNumber().DoubleValue();
    if (!(from >= 0)) throw SpinError(ErrorCode::kInvalidArgument, "model config field 'slidingWindowFromLayer' must be >= 0");
    config.sliding_window_from_layer = static_cast<int64_t>(from);
  }
  const std::string scaling = read.String("ropeScaling");
  if (scaling == "none") {
    config.rope_scaling = RopeScaling::kNone;
  } else if (scaling == "linear") {
    config.rope_scaling = RopeScaling::kLinear;
    config.rope_factor = read.PositiveNumber("ropeFactor");
  } else if (scaling == "llama3") {
    config.rope_scaling = RopeScaling::kLlama3;
    config.rope_factor = read.PositiveNumber("ropeFactor");
    config.rope_low_freq_factor = read.PositiveNumber("ropeLowFreqFactor");
    config.rope_high_freq_factor = read.PositiveNumber("ropeHighFreqFactor");
    config.rope_original_max_positions = read.PositiveInt("ropeOriginalMaxPositions");
  } else {
    throw SpinError(ErrorCode::kInvalidArgument, "unsupported rope scaling '" + scaling + "' (none, linear, llama3)");
  }
  return config;
}

}  // namespace spin
