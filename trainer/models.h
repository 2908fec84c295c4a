// The networks the trainer trains, laid out (parameter names, order, shapes) exactly like the
// official code's / Hugging Face's so that NiNo's neural graphs apply unchanged:
//  * VisionNet: utils.vision.Net of the official code (3x3 convs, first stride 2, GAP, linear;
//    wider odd kernels optional, padded to keep the official feature-map sizes after the first)
//    or its MLP form; parameters fc.<i>.weight / fc.<i>.bias.
//  * Gpt2LM: a GPT-2 causal language model named like transformers' GPT2LMHeadModel
//    (transformer.wte/wpe/h.<b>.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj}/ln_f;
//    Conv1D weights stored (in, out); lm_head tied to wte).
#ifndef NINO_TRAINER_MODELS_H_
#define NINO_TRAINER_MODELS_H_

#include <torch/torch.h>

#include <vector>

namespace nino::trainer {

struct VisionNetOptions {
  std::vector<int64_t> hid = {16, 32, 32};
  bool conv = true;         // false: MLP on flattened images
  int64_t kernel_size = 3;  // conv kernels k x k, k odd (the official Net: 3)
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t num_classes = 10;
};

class VisionNetImpl : public torch::nn::Module {
 public:
  explicit VisionNetImpl(const VisionNetOptions& o);
  torch::Tensor forward(const torch::Tensor& x);  // x [B, C, H, W] -> logits [B, classes]

 private:
  bool conv_;
  torch::nn::Sequential fc_{nullptr};
};
TORCH_MODULE(VisionNet);

struct Gpt2Options {
  int64_t vocab_size = 256;
  int64_t n_positions = 128;
  int64_t n_embd = 64;
  int64_t n_layer = 3;
  int64_t n_head = 4;
  double init_std = 0.02;
};

// y = x W + b with W stored (in, out), as transformers' Conv1D.
class Conv1DImpl : public torch::nn::Module {
 public:
  Conv1DImpl(int64_t in, int64_t out, double std);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(Conv1D);

class Gpt2LMImpl : public torch::nn::Module {
 public:
  explicit Gpt2LMImpl(const Gpt2Options& o);
  // tokens [B, T] int64 -> logits [B, T, V]
  torch::Tensor forward(const torch::Tensor& tokens);
  const Gpt2Options& options() const { return o_; }

 private:
  Gpt2Options o_;
  torch::nn::Module* transformer_ = nullptr;
  torch::nn::Embedding wte_{nullptr}, wpe_{nullptr};
  std::vector<std::shared_ptr<torch::nn::Module>> blocks_;
  torch::nn::LayerNorm ln_f_{nullptr};
};
TORCH_MODULE(Gpt2LM);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_MODELS_H_
